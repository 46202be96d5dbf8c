"""Celery tasks of the training app (routed to the `training` queue by CELERY_TASK_ROUTES "training.*").

Run a worker for it with:  celery -A telediag worker -Q training --concurrency 1
"""

from celery import shared_task
from django.conf import settings

from training import services

# Training takes hours, far beyond the inference-sized global limits; and it must not be redelivered
# while running (Redis redelivers unacknowledged messages after the visibility timeout), so the
# message is acknowledged on receipt. A run interrupted by a worker crash is re-queued from the admin
# ("Queue again") and resumes from its output folder.
TRAINING_SOFT_TIME_LIMIT = getattr(settings, "TRAINING_TASK_SOFT_TIME_LIMIT", 3 * 24 * 3600)
TRAINING_TIME_LIMIT = getattr(settings, "TRAINING_TASK_TIME_LIMIT", TRAINING_SOFT_TIME_LIMIT + 600)


@shared_task(
    name="training.tasks.retrain_task",
    acks_late=False,
    reject_on_worker_lost=False,
    soft_time_limit=TRAINING_SOFT_TIME_LIMIT,
    time_limit=TRAINING_TIME_LIMIT,
    ignore_result=True,
)
def retrain_task(run_id):
    """Execute TrainingRun ``run_id`` with the same service as `manage.py retrain`."""
    run = services.execute_training_run(run_id)
    return run.status if run is not None else None

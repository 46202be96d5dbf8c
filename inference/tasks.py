"""Celery tasks of the ``inference`` queue. Messages carry ids only, never image bytes.

Imported by the worker's parent process (autodiscovery): nothing here may import Keras or
TensorFlow at module level; models are loaded inside the child (see ``inference.worker``).
"""

import logging
import sys

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_init, worker_process_init

logger = logging.getLogger(__name__)


_ANALYSIS_TASK_OPTIONS = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="inference.analyse_smear", **_ANALYSIS_TASK_OPTIONS)
def analyse_smear(self, job_id):
    """Analyse one smear for one AnalysisJob (id). Idempotent: a duplicate or redelivery is a no-op."""
    return _run(self, [job_id])[int(job_id)]


@shared_task(name="inference.analyse_smears", **_ANALYSIS_TASK_OPTIONS)
def analyse_smears(self, job_ids):
    """Analyse the smears of one submission (AnalysisJob ids) in one message: one hand-off, one
    claim and one move of the case for all of them. Idempotent like ``analyse_smear``."""
    return _run(self, job_ids)


def _run(task, job_ids):
    """{job id: outcome} of running this message's jobs."""
    from django.db import close_old_connections, connection

    from inference import batching
    from inference.worker import run_job

    job_ids = [int(job_id) for job_id in job_ids]
    task_id = task.request.id or ""
    # Workers reuse connections across tasks (settings.CELERY_DB_REUSE_MAX): drop an old or broken
    # one first, as Django does per request. Not inside a caller's transaction (tests, eager calls).
    if not connection.in_atomic_block:
        close_old_connections()
    if len(job_ids) == 1 and batching.batch_max() <= 1:
        return {job_ids[0]: run_job(job_ids[0], task_id=task_id)}
    # Several smears, or TELEDIAG_INFERENCE_BATCH_MAX above 1 (GPU nodes: waiting smears come along).
    return batching.run_jobs(job_ids, task_id=task_id)


@shared_task(name="inference.sweep_analysis", ignore_result=True)
def sweep_analysis():
    """Periodic (Celery beat): re-publish stuck jobs, start cases that waited for a model."""
    from inference.services import sweep

    return sweep()


@worker_init.connect
def _check_parent_is_clean(**kwargs):
    # The prefork parent must not have started TensorFlow before forking its children.
    loaded = [name for name in ("tensorflow", "keras", "torch", "jax") if name in sys.modules]
    if loaded:
        logger.warning("Worker parent imported %s before forking; children may hang.", ", ".join(loaded))


_consumes_inference = False


@celeryd_after_setup.connect
def _note_queues(sender=None, instance=None, **kwargs):
    # In the parent, before forking: only workers of the inference queue warm a model up.
    global _consumes_inference
    _consumes_inference = "inference" in instance.app.amqp.queues.consume_from


@worker_process_init.connect
def _init_child(**kwargs):
    # A fresh child starts with an empty model cache, then loads the active model (warm-up), so the
    # first case after a deploy or a recycled child is as fast as the rest. The pool waits for this
    # (worker_proc_alive_timeout, TELEDIAG_WORKER_START_TIMEOUT_S).
    from django.conf import settings

    from inference import worker

    worker.clear_cache()
    if _consumes_inference and getattr(settings, "WORKER_WARMUP", False):
        worker.warm_up()

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Model training and registry"

    def ready(self):
        # Registers the retraining task in every process: the admin queues it by name
        # (core.task_lookup) and Celery discovers task modules only in workers. No Keras import.
        from training import tasks  # noqa: F401

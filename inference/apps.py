from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "AI analysis"

    def ready(self):
        from inference import receivers  # noqa: F401 - connects the signal receivers
        # Registers the tasks in every process: the web queues them by name (core.task_lookup), and
        # Celery discovers task modules only in workers. tasks.py imports no Keras.
        from inference import tasks  # noqa: F401

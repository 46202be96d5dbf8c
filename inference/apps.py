from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "AI analysis"

    def ready(self):
        # receivers: connects the signal receivers. tasks: registers the tasks in every process, for
        # the web queues them by name (core.task_lookup) and Celery discovers task modules only in
        # workers (tasks.py imports no Keras).
        from inference import receivers, tasks  # noqa: F401

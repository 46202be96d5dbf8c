from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "AI analysis"

    def ready(self):
        # receivers: connects the signal receivers. tasks: registers the tasks in every process (web
        # servers too): services publish them by name (core.task_lookup); only workers autodiscover.
        from inference import receivers, tasks  # noqa: F401

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Model monitoring"

    def ready(self):
        # receivers: record each signed case's outcome; tasks: the periodic alert check by name.
        from monitoring import receivers, tasks  # noqa: F401

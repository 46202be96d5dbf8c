from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations (health, metrics, logs)"

    def ready(self):
        from ops import worker_signals  # noqa: F401 - connects the Celery signal hooks

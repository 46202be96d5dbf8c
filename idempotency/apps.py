from django.apps import AppConfig


class IdempotencyConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "idempotency"
    verbose_name = "Idempotent requests"

    def ready(self):
        # Registers the purge task in every process (Celery discovers task modules only in workers).
        from idempotency import tasks  # noqa: F401

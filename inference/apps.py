from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "AI analysis"

    def ready(self):
        from inference import receivers  # noqa: F401 - connects the signal receivers

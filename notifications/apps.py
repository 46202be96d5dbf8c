from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        # receivers: notices on signature, amendment, urgent arrival and failed analysis. tasks:
        # registers the e-mail task in every process (the web queues it by name).
        from notifications import receivers, tasks  # noqa: F401

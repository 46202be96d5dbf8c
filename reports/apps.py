from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Signed reports"

    def ready(self):
        # receivers: a report version for every signature and amendment. tasks: registers the FHIR
        # push in every process, for the web queues it by name (core.task_lookup).
        from reports import receivers, tasks  # noqa: F401

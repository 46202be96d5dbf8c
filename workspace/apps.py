from django.apps import AppConfig


class WorkspaceConfig(AppConfig):
    """The pathologist's review workspace: the queue with the AI's suggestions, taking cases."""

    name = "workspace"
    verbose_name = "Review workspace"

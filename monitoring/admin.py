"""Read-only views for superusers; lab admins use the portal's Monitoring pages."""

from django.contrib import admin

from monitoring.models import CaseOutcome, MonitoringAlert


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CaseOutcome)
class CaseOutcomeAdmin(ReadOnlyAdmin):
    list_display = ["case", "site", "model_version", "ai_label", "diagnosis", "agreed", "flagged", "signed_at"]
    list_filter = ["laboratory", "site", "model_version", "agreed", "flagged"]
    list_select_related = ["case", "site", "model_version"]


@admin.register(MonitoringAlert)
class MonitoringAlertAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "kind",
        "laboratory",
        "site",
        "model_version",
        "value",
        "acknowledged_at",
        "resolved_at",
    ]
    list_filter = ["kind", "laboratory", "site"]
    list_select_related = ["laboratory", "site", "model_version"]

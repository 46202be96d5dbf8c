from django.contrib import admin

from core.admin import ReadOnlyAdmin
from reports.models import ReportVersion


@admin.register(ReportVersion)
class ReportVersionAdmin(ReadOnlyAdmin):
    list_display = ["case", "number", "created_at", "fhir_pushed_at", "fhir_push_attempts", "fhir_push_error"]
    list_select_related = ["case"]
    list_filter = ["fhir_pushed_at"]
    exclude = ["pdf"]  # patient data: downloaded through the case's access rules, not the admin

from django.contrib import admin

from audit.models import AuditEvent
from core.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "case", "patient", "ip_address"]
    list_select_related = ["actor", "case", "patient"]
    list_filter = ["action"]

from django.contrib import admin

from core.admin import ReadOnlyAdmin
from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["recipient", "kind", "title", "created_at", "read_at", "emailed_at"]
    list_select_related = ["recipient"]
    list_filter = ["kind"]

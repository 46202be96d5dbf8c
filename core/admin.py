"""Admin building blocks shared by the apps."""
from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Clinical records change only through the services (with audit); the admin only reads."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

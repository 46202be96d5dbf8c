"""Admin building blocks shared by the apps."""

from django.contrib import admin

from core.pagination import CappedPaginator


class ReadOnlyAdmin(admin.ModelAdmin):
    """Clinical records change only through the services (with audit); the admin only reads."""

    # Millions of rows: count at most 10,000 (core.pagination), never the whole table twice.
    paginator = CappedPaginator
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

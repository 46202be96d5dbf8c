from django.contrib import admin

from cases.listing import CappedPaginator
from cases.models import AuditEvent, Case, Patient, Review, Smear


class ReadOnlyAdmin(admin.ModelAdmin):
    """Clinical records change only through the services (with audit); the admin only reads."""

    # Millions of rows: count at most 10,000 (cases.listing), never the whole table twice.
    paginator = CappedPaginator
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ["mrn", "family_name", "given_name", "organisation", "created_at"]
    list_select_related = ["organisation"]
    list_filter = ["organisation"]
    search_fields = ["mrn", "family_name"]


class SmearInline(admin.TabularInline):
    model = Smear
    extra = 0
    can_delete = False
    fields = ["original_filename", "format", "width", "height", "sha256"]
    readonly_fields = fields


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    list_display = ["reference", "site", "laboratory", "priority", "status", "created_at"]
    list_select_related = ["site", "laboratory"]
    list_filter = ["status", "priority", "site", "laboratory"]
    inlines = [SmearInline]


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ["case", "kind", "diagnosis", "signed_by", "signed_at"]
    list_select_related = ["case", "signed_by"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "case", "patient", "ip_address"]
    list_select_related = ["actor", "case", "patient"]
    list_filter = ["action"]

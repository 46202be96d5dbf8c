from django.contrib import admin

from cases.models import Case, Patient, Review, Smear
from core.admin import ReadOnlyAdmin


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

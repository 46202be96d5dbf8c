from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import Organisation, ReferralLink, User


class ReferralLinkInline(admin.TabularInline):
    model = ReferralLink
    fk_name = "site"
    extra = 1
    verbose_name = "reading laboratory this site refers to"
    verbose_name_plural = "reading laboratories this site refers to"


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name"]
    inlines = [ReferralLinkInline]


@admin.register(ReferralLink)
class ReferralLinkAdmin(admin.ModelAdmin):
    list_display = ["site", "laboratory", "created_at"]
    list_select_related = ["site", "laboratory"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "get_full_name", "organisation", "role", "is_active", "is_superuser"]
    list_filter = ["role", "organisation", "is_active", "is_superuser"]
    fieldsets = BaseUserAdmin.fieldsets + (("Telediag", {"fields": ("organisation", "role")}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + (("Telediag", {"fields": ("organisation", "role")}),)

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm

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
    change_password_form = AdminPasswordChangeForm
    # Records of what happened, not settings: shown, not edited (and no unlabelled date/time inputs).
    readonly_fields = ("last_login", "date_joined")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:  # a new account's password is temporary
            from security.passwords import password_set_by_admin

            password_set_by_admin(obj, admin=request.user, request=request, new_account=True)

    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:  # the new password was saved
            from security.passwords import password_set_by_admin

            password_set_by_admin(self.get_object(request, id), admin=request.user, request=request)
        return response

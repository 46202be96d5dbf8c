from django.contrib import admin

from idempotency.models import IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ("scope", "key", "user", "resource_id", "created_at")
    search_fields = ("key", "user__username")
    readonly_fields = [field.name for field in IdempotencyKey._meta.fields]

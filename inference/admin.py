from django.contrib import admin, messages

from inference.models import AnalysisJob, Prediction


@admin.register(AnalysisJob)
class AnalysisJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "smear",
        "model_version",
        "status",
        "attempts",
        "enqueued_at",
        "started_at",
        "finished_at",
        "worker",
    ]
    list_filter = ["status", "model_version"]
    search_fields = ["=id", "=smear__id", "=smear__case__id", "reason", "last_enqueue_error"]
    readonly_fields = [f.name for f in AnalysisJob._meta.fields]
    actions = ["publish_again"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Publish the selected queued jobs again")
    def publish_again(self, request, queryset):
        from inference.services import publish_jobs

        ids = list(queryset.filter(status=AnalysisJob.Status.QUEUED).values_list("pk", flat=True))
        published = publish_jobs(ids)
        messages.info(request, f"Published {published} of {len(ids)} queued job(s).")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["id", "smear", "model_version", "label", "inference_ms", "queue_wait_ms", "created_at"]
    list_filter = ["label", "model_version"]
    search_fields = ["=id", "=smear__id", "=smear__case__id"]
    readonly_fields = [f.name for f in Prediction._meta.fields]

    def has_add_permission(self, request):
        return False

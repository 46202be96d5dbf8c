"""Admin for the model registry and for retraining runs.

Model versions are created only by retraining (their recorded facts are read-only here); the one
thing an admin changes is which version is active ("promote"). Retraining is started by adding a
Training run: saving the form queues ``training.tasks.retrain_task`` on the `training` queue.
"""
import base64
import json
from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils.html import format_html, format_html_join

from training import registry, services
from training.models import ModelVersion, TrainingRun

MAX_INLINE_PLOT_BYTES = 2 * 1024 * 1024


def _percent(value):
    return "—" if value is None else f"{100 * float(value):.2f}%"


def _pretty_json(value):
    return format_html("<pre class='td-pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    class Media:  # styles as a file: the Content-Security-Policy allows no inline style
        css = {"all": ["css/admin-training.css"]}

    list_display = ["name", "architecture", "val_accuracy_display", "test_accuracy_display", "is_active",
                    "input_size", "trained_at", "trained_by"]
    list_filter = ["architecture", "is_active"]
    search_fields = ["name", "architecture", "sha256"]
    list_select_related = ["trained_by"]
    actions = ["promote"]
    fields = [
        "name", "architecture", "is_active", "notes", "file_path", "sha256", "class_names", "input_size",
        "metrics_summary", "metrics_display", "plots_display", "preprocessing_display", "data_fingerprint",
        "split_summary", "versions_display", "git_commit", "trained_by", "trained_at", "created_at",
    ]
    readonly_fields = [f for f in fields if f != "notes"]

    def has_add_permission(self, request):
        return False  # versions come from retraining, never typed in

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_active:
            return False  # promote another version first
        return super().has_delete_permission(request, obj)

    @admin.display(description="Val. accuracy")
    def val_accuracy_display(self, obj):
        return _percent(obj.val_accuracy)

    @admin.display(description="Test accuracy")
    def test_accuracy_display(self, obj):
        return _percent(obj.test_accuracy)

    @admin.display(description="Summary")
    def metrics_summary(self, obj):
        rows = []
        for split in ("val", "test"):
            values = (obj.metrics or {}).get(split) or {}
            if values:
                rows.append((split, _percent(values.get("accuracy")), _percent(values.get("macro_f1")),
                             values.get("ece", "—"), values.get("n", "—")))
        if not rows:
            return "—"
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            "<table><tr><th>split</th><th>accuracy</th><th>macro-F1</th><th>ECE</th><th>images</th></tr>{}</table>",
            body,
        )

    @admin.display(description="Metrics (recorded)")
    def metrics_display(self, obj):
        return _pretty_json(obj.metrics)

    @admin.display(description="Preprocessing")
    def preprocessing_display(self, obj):
        return _pretty_json(obj.preprocessing)

    @admin.display(description="Library versions")
    def versions_display(self, obj):
        return _pretty_json(obj.versions)

    @admin.display(description="Split")
    def split_summary(self, obj):
        split = obj.split or {}
        summary = {k: v for k, v in split.items() if k != "splits"}
        return _pretty_json(summary)

    @admin.display(description="Plots")
    def plots_display(self, obj):
        images = []
        for name, path in sorted((obj.plots or {}).items()):
            full = registry.resolve_path(path)
            try:
                if full.stat().st_size > MAX_INLINE_PLOT_BYTES:
                    images.append(format_html("<p>{}: {}</p>", name, full))
                    continue
                data = base64.b64encode(Path(full).read_bytes()).decode()
            except OSError:
                images.append(format_html("<p>{}: missing file {}</p>", name, full))
                continue
            images.append(format_html(
                # Sized by attribute: the Content-Security-Policy allows no inline style.
                "<figure><img src='data:image/png;base64,{}' width='480' alt='{}'><figcaption>{}</figcaption>"
                "</figure>", data, name, name,
            ))
        return format_html_join("", "{}", ((image,) for image in images)) if images else "—"

    @admin.action(description="Promote the selected version (make it the active model)")
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version to promote.", messages.ERROR)
            return
        version = queryset.get()
        try:
            registry.activate(version, verify=True, by=request.user)
        except registry.RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{version.name} is now the active model.", messages.SUCCESS)


class TrainingRunForm(forms.ModelForm):
    architectures = forms.MultipleChoiceField(
        choices=[(name, name) for name in services.available_architectures()],
        initial=list(services.STUDY_ARCHITECTURES),
        widget=forms.CheckboxSelectMultiple,
    )
    split_mode = forms.ChoiceField(choices=[(m, m) for m in services.SPLIT_MODES], initial="grouped")

    class Meta:
        model = TrainingRun
        fields = ["data_dir", "architectures", "epochs", "image_size", "split_mode", "seed", "batch_size",
                  "augment", "promote", "weights_dir", "max_per_class", "output_dir"]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            services.RetrainOptions(
                data_dir=cleaned["data_dir"], architectures=cleaned["architectures"], epochs=cleaned["epochs"],
                image_size=cleaned["image_size"], split_mode=cleaned["split_mode"], seed=cleaned["seed"],
                batch_size=cleaned["batch_size"], promote=cleaned.get("promote") or None,
                weights_dir=cleaned.get("weights_dir") or None, max_per_class=cleaned.get("max_per_class"),
            ).validate(check_paths=False)
        except services.TrainingError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return cleaned


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["css/admin-training.css"]}

    form = TrainingRunForm
    list_display = ["id", "status", "architectures_display", "epochs", "image_size", "split_mode", "progress",
                    "requested_by", "created_at", "finished_at"]
    list_filter = ["status"]
    actions = ["requeue"]
    readonly_fields = ["status", "requested_by", "created_at", "started_at", "finished_at", "progress",
                       "summary_display", "error", "log_display", "versions"]

    @admin.display(description="Architectures")
    def architectures_display(self, obj):
        return ", ".join(obj.architectures or [])

    @admin.display(description="Comparison")
    def summary_display(self, obj):
        return format_html("<pre>{}</pre>", obj.summary) if obj.summary else "—"

    @admin.display(description="Log")
    def log_display(self, obj):
        return format_html("<pre class='td-pre-scroll'>{}</pre>", obj.log) if obj.log else "—"

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(TrainingRunForm.Meta.fields)
        return list(TrainingRunForm.Meta.fields) + self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return list(TrainingRunForm.Meta.fields) + self.readonly_fields  # a run's request never changes

    def save_model(self, request, obj, form, change):
        if not change:
            obj.requested_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            transaction.on_commit(lambda: services.enqueue_training_run(obj))

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request, f"Training run {obj.pk} queued on the 'training' queue; follow it on this page.",
            messages.SUCCESS,
        )
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description="Queue again (resumes from the run's output folder)")
    def requeue(self, request, queryset):
        queued = 0
        for run in queryset:
            if run.status == TrainingRun.Status.RUNNING:
                self.message_user(request, f"Run {run.pk} is running; not queued again.", messages.WARNING)
                continue
            TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.QUEUED, error="", progress="")
            run.refresh_from_db()
            services.enqueue_training_run(run)
            queued += 1
        if queued:
            self.message_user(request, f"{queued} run(s) queued again.", messages.SUCCESS)

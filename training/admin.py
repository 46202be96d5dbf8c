"""Admin for the model registry and for retraining runs.

Model versions are created only by retraining (their recorded facts are read-only here); the one
thing an admin changes is which version is active ("promote"). Retraining is started by adding a
Training run: saving the form queues ``training.tasks.retrain_task`` on the `training` queue.
"""

import base64
import json
import shlex
from pathlib import Path

from django.contrib import admin, messages
from django.db import transaction
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.utils.html import format_html, format_html_join

from training import registry, services
from training.errors import TrainingError
from training.forms import OPTION_NAMES, TrainingRunForm
from training.models import ModelRecord, ModelVersion, TrainingRun
from training.options import RetrainOptions

MAX_INLINE_PLOT_BYTES = 2 * 1024 * 1024


def _percent(value):
    return "—" if value is None else f"{100 * float(value):.2f}%"


def _pretty_json(value):
    return format_html("<pre class='td-pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


def _record(version):
    """The version's training record (an empty one for a version registered without)."""
    return getattr(version, "record", None) or ModelRecord()


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    class Media:  # styles as a file: the Content-Security-Policy allows no inline style
        css = {"all": ["css/admin-training.css"]}

    list_display = [
        "name",
        "architecture",
        "val_accuracy_display",
        "test_accuracy_display",
        "is_active",
        "input_size",
        "trained_at",
        "trained_by",
    ]
    list_filter = ["architecture", "is_active"]
    search_fields = ["name", "architecture", "sha256"]
    list_select_related = ["trained_by"]
    actions = ["promote"]
    fields = [
        "name",
        "architecture",
        "is_active",
        "notes",
        "file_path",
        "sha256",
        "class_names",
        "input_size",
        "metrics_summary",
        "metrics_display",
        "plots_display",
        "preprocessing_display",
        "data_fingerprint",
        "split_summary",
        "versions_display",
        "git_commit",
        "trained_by",
        "trained_at",
        "created_at",
    ]
    readonly_fields = [f for f in fields if f != "notes"]

    def has_add_permission(self, request):
        return False  # versions come from retraining, never typed in

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_active:
            return False  # promote another version first
        return super().has_delete_permission(request, obj)

    def get_queryset(self, request):
        # The accuracies come out of the record's JSON in the database: the list never loads records.
        return (
            super()
            .get_queryset(request)
            .annotate(
                recorded_val_accuracy=KeyTextTransform("accuracy", KeyTransform("val", "record__metrics")),
                recorded_test_accuracy=KeyTextTransform("accuracy", KeyTransform("test", "record__metrics")),
            )
        )

    @admin.display(description="Val. accuracy")
    def val_accuracy_display(self, obj):
        return _percent(obj.recorded_val_accuracy)

    @admin.display(description="Test accuracy")
    def test_accuracy_display(self, obj):
        return _percent(obj.recorded_test_accuracy)

    @admin.display(description="Summary")
    def metrics_summary(self, obj):
        rows = []
        for split in ("val", "test"):
            values = (_record(obj).metrics or {}).get(split) or {}
            if values:
                rows.append(
                    (
                        split,
                        _percent(values.get("accuracy")),
                        _percent(values.get("macro_f1")),
                        values.get("ece", "—"),
                        values.get("n", "—"),
                    )
                )
        if not rows:
            return "—"
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            "<table><tr><th>split</th><th>accuracy</th><th>macro-F1</th><th>ECE</th><th>images</th></tr>{}</table>",
            body,
        )

    @admin.display(description="Metrics (recorded)")
    def metrics_display(self, obj):
        return _pretty_json(_record(obj).metrics)

    @admin.display(description="Preprocessing")
    def preprocessing_display(self, obj):
        return _pretty_json(_record(obj).preprocessing)

    @admin.display(description="Library versions")
    def versions_display(self, obj):
        return _pretty_json(_record(obj).versions)

    @admin.display(description="Split")
    def split_summary(self, obj):
        split = _record(obj).split or {}
        summary = {k: v for k, v in split.items() if k != "splits"}
        return _pretty_json(summary)

    @admin.display(description="Plots")
    def plots_display(self, obj):
        images = []
        for name, path in sorted((_record(obj).plots or {}).items()):
            full = registry.resolve_path(path)
            try:
                if full.stat().st_size > MAX_INLINE_PLOT_BYTES:
                    images.append(format_html("<p>{}: {}</p>", name, full))
                    continue
                data = base64.b64encode(Path(full).read_bytes()).decode()
            except OSError:
                images.append(format_html("<p>{}: missing file {}</p>", name, full))
                continue
            images.append(
                format_html(
                    # Sized by attribute: the Content-Security-Policy allows no inline style.
                    "<figure><img src='data:image/png;base64,{}' width='480' alt='{}'><figcaption>{}</figcaption>"
                    "</figure>",
                    data,
                    name,
                    name,
                )
            )
        return format_html_join("", "{}", ((image,) for image in images)) if images else "—"

    @admin.action(description="Promote the selected version (make it the active model)")
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version to promote.", messages.ERROR)
            return
        version = queryset.get()
        try:
            registry.activate(version, verify=True, actor=request.user, source="admin", request=request)
        except registry.RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{version.name} is now the active model.", messages.SUCCESS)


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["css/admin-training.css"]}

    form = TrainingRunForm
    list_display = [
        "id",
        "status",
        "architectures_display",
        "epochs_display",
        "image_size_display",
        "split_display",
        "progress",
        "requested_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    actions = ["requeue"]
    readonly_fields = [
        "status",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "progress",
        "summary_display",
        "error",
        "log_display",
        "versions",
    ]

    @admin.display(description="Architectures")
    def architectures_display(self, obj):
        return ", ".join(obj.options.get("architectures") or [])

    @admin.display(description="Epochs")
    def epochs_display(self, obj):
        return obj.options.get("epochs")

    @admin.display(description="Image size")
    def image_size_display(self, obj):
        return obj.options.get("image_size")

    @admin.display(description="Split")
    def split_display(self, obj):
        return obj.options.get("split_mode")

    @admin.display(description="Options")
    def options_display(self, obj):
        return _pretty_json(obj.options)

    @admin.display(description="Same run from the command line")
    def command_line_display(self, obj):
        try:
            options = RetrainOptions.from_json(obj.options).validate(check_paths=False)
        except TrainingError as exc:
            return f"— ({exc})"
        words = ["python", "manage.py", "retrain", "--data", str(options.data_dir), *options.arguments()]
        if options.promote:
            words += ["--promote", options.promote]
        if options.weights_dir:
            words += ["--weights-dir", str(options.weights_dir)]
        if options.output_dir:
            words += ["--output", str(options.output_dir)]
        return format_html("<code>{}</code>", shlex.join(words))

    @admin.display(description="Comparison")
    def summary_display(self, obj):
        return format_html("<pre>{}</pre>", obj.summary) if obj.summary else "—"

    @admin.display(description="Log")
    def log_display(self, obj):
        return format_html("<pre class='td-pre-scroll'>{}</pre>", obj.log) if obj.log else "—"

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(OPTION_NAMES)
        return ["options_display", "command_line_display", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["options_display", "command_line_display", *self.readonly_fields]  # a run's request never changes

    def save_model(self, request, obj, form, change):
        if not change:
            obj.requested_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            transaction.on_commit(lambda: services.enqueue_training_run(obj))

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request,
            f"Training run {obj.pk} queued on the 'training' queue; follow it on this page.",
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

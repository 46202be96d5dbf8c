from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q


class ModelVersionQuerySet(models.QuerySet):
    def without_record(self):
        """Versions without their training record (ModelVersion.RECORD_FIELDS), for serving paths."""
        return self.defer(*ModelVersion.RECORD_FIELDS)


class ModelVersion(models.Model):
    """One trained classifier: its file, how it was made and how well it did."""

    # How the version was made: large JSON (the split alone lists every training file, ~300 KB for
    # the shipped model) that uploads, workers and status pages never read; they defer it.
    RECORD_FIELDS = ("preprocessing", "metrics", "plots", "split", "versions", "notes", "data_fingerprint", "git_commit")

    name = models.CharField(max_length=100, unique=True, help_text="Version label, e.g. mobilenetv2-20261126-0930.")
    architecture = models.CharField(max_length=40)
    file_path = models.CharField(max_length=500, help_text="Path of the .keras file (relative to the model folder).")
    sha256 = models.CharField(max_length=64)
    class_names = models.JSONField(default=list)
    input_size = models.PositiveIntegerField(default=224)
    preprocessing = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    plots = models.JSONField(default=dict, blank=True, help_text="Plot name → PNG path.")
    data_fingerprint = models.CharField(max_length=64, blank=True)
    split = models.JSONField(default=dict, blank=True)
    versions = models.JSONField(default=dict, blank=True, help_text="Keras, backend and library versions.")
    smear_check = models.JSONField(
        default=dict, blank=True, db_default={},
        help_text="Parameters of the 'not a stained blood smear' check fitted on this model's training split "
                  "(ml.smear_check.SmearCheck.to_dict()); empty: no check, every image is analysed.",
    )
    git_commit = models.CharField(max_length=40, blank=True)
    trained_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    trained_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=False)
    notes = models.TextField(blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model_version"),
        ]

    def __str__(self):
        return self.name

    @classmethod
    def active(cls, *, with_record=True):
        """The active version or None; ``with_record=False`` leaves the training record unread."""
        versions = cls.objects.all() if with_record else cls.objects.without_record()
        return versions.filter(is_active=True).first()

    @classmethod
    def _lock_activation(cls):
        """Serialise activations: a second one waits for the first instead of failing on the constraint.

        On PostgreSQL a SHARE ROW EXCLUSIVE table lock conflicts with itself (and with writes) but
        not with plain reads, so inference workers keep reading the active version meanwhile. SQLite
        already serialises write transactions.
        """
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f'LOCK TABLE "{cls._meta.db_table}" IN SHARE ROW EXCLUSIVE MODE')

    def activate(self):
        """Make this the one active model, switched in one transaction (nobody ever sees two or none)."""
        model = type(self)
        with transaction.atomic():
            model._lock_activation()
            if not model.objects.filter(pk=self.pk).exists():
                raise model.DoesNotExist(f"Model version {self.pk} no longer exists.")
            model.objects.filter(is_active=True).exclude(pk=self.pk).update(is_active=False)
            model.objects.filter(pk=self.pk).update(is_active=True)
        self.is_active = True

    @property
    def val_accuracy(self):
        return (self.metrics or {}).get("val", {}).get("accuracy")

    @property
    def test_accuracy(self):
        return (self.metrics or {}).get("test", {}).get("accuracy")


class TrainingRun(models.Model):
    """A retraining request started from the admin and executed by the `training` Celery queue."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Promote(models.TextChoices):
        NONE = "", "Do not promote"
        BEST = "best", "Promote the best validation accuracy"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    data_dir = models.CharField(max_length=500, help_text="Labelled image folder (<root>/<Class>/*.jpg) on the worker.")
    architectures = models.JSONField(default=list, help_text="Architectures to train, e.g. [\"convnet\", \"vgg19\"].")
    epochs = models.PositiveIntegerField(default=30)
    image_size = models.PositiveIntegerField(default=224)
    split_mode = models.CharField(max_length=16, default="grouped")
    seed = models.IntegerField(default=42)
    batch_size = models.PositiveIntegerField(default=32)
    augment = models.BooleanField(default=True)
    promote = models.CharField(max_length=8, choices=Promote.choices, blank=True, default=Promote.NONE)
    weights_dir = models.CharField(max_length=500, blank=True, help_text="Folder of local ImageNet weight files.")
    max_per_class = models.PositiveIntegerField(null=True, blank=True, help_text="Smoke runs only.")
    output_dir = models.CharField(
        max_length=500, blank=True, help_text="Work folder (checkpoints); re-running with it resumes."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress = models.CharField(max_length=500, blank=True)
    log = models.TextField(blank=True)
    summary = models.TextField(blank=True, help_text="Comparison table of the trained models.")
    error = models.TextField(blank=True)
    versions = models.ManyToManyField(ModelVersion, blank=True, related_name="training_runs")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        archs = ", ".join(self.architectures or [])
        return f"Training run {self.pk} ({archs or 'no architecture'}, {self.get_status_display().lower()})"

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import Q

from training.errors import TrainingError
from training.options import RetrainOptions


class ModelVersion(models.Model):
    """One trained classifier: its file and what serving needs; how it was made and how well it did
    is its ModelRecord (``version.record``)."""

    name = models.CharField(max_length=100, unique=True, help_text="Version label, e.g. mobilenetv2-20261126-0930.")
    architecture = models.CharField(max_length=40)
    file_path = models.CharField(max_length=500, help_text="Path of the .keras file (relative to the model folder).")
    sha256 = models.CharField(max_length=64)
    class_names = models.JSONField(default=list)
    input_size = models.PositiveIntegerField(default=224)
    data_fingerprint = models.CharField(max_length=64, blank=True)
    smear_check = models.JSONField(
        default=dict,
        blank=True,
        db_default={},
        help_text="Parameters of the 'not a stained blood smear' check fitted on this model's training split "
        "(ml.smear_check.SmearCheck.to_dict()); empty: no check, every image is analysed.",
    )
    ood = models.JSONField(
        default=dict,
        blank=True,
        db_default={},
        help_text="Out-of-distribution model fitted on this model's training split, with its calibrated "
        "threshold and digest (ml.ood.MahalanobisOOD.to_dict()); empty: no OOD score, no "
        "'outside validated conditions' flag.",
    )
    git_commit = models.CharField(max_length=40, blank=True)
    trained_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    trained_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=False)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model_version"),
        ]

    def __str__(self):
        return self.name

    @classmethod
    def active(cls):
        """The active version or None."""
        return cls.objects.filter(is_active=True).first()

    @classmethod
    def active_id(cls):
        """The active version's id or None: all an upload needs to queue its jobs, at about two
        thirds of the CPU of loading the row (whose gate parameters alone are ~230 KB of JSON)."""
        return cls.objects.filter(is_active=True).values_list("pk", flat=True).first()

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
        """Make this the one active model, switched in one transaction (nobody ever sees two or none).

        Returns the version that was active just before (None if none was; this one if it was)."""
        model = type(self)
        with transaction.atomic():
            model._lock_activation()
            if not model.objects.filter(pk=self.pk).exists():
                raise model.DoesNotExist(f"Model version {self.pk} no longer exists.")
            previous = model.objects.filter(is_active=True).first()
            model.objects.filter(is_active=True).exclude(pk=self.pk).update(is_active=False)
            model.objects.filter(pk=self.pk).update(is_active=True)
        self.is_active = True
        return previous

    @property
    def val_accuracy(self):
        return self._recorded_metrics.get("val", {}).get("accuracy")

    @property
    def test_accuracy(self):
        return self._recorded_metrics.get("test", {}).get("accuracy")

    @property
    def _recorded_metrics(self):
        record = getattr(self, "record", None)  # None for a version registered without one
        return (record.metrics if record is not None else None) or {}


class ModelRecord(models.Model):
    """How a version was made and how well it did, as recorded in its metadata.json.

    Kept apart from ModelVersion because it is large (the split alone lists every training file,
    ~300 KB for the shipped model) and only the registry, reports and the admin read it: uploads,
    workers and status pages load ModelVersion rows without it.
    """

    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, primary_key=True, related_name="record")
    preprocessing = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    plots = models.JSONField(default=dict, blank=True, help_text="Plot name → PNG path.")
    split = models.JSONField(default=dict, blank=True)
    versions = models.JSONField(default=dict, blank=True, help_text="Keras, backend and library versions.")

    def __str__(self):
        return f"Training record of {self.version_id}"


class TrainingRun(models.Model):
    """A retraining request started from the admin and executed by the `training` Celery queue."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    options = models.JSONField(
        default=dict,
        help_text="What to train: training.options.RetrainOptions.to_json() (data folder, "
        "architectures, epochs, image size, split, colour and augmentation settings, ...).",
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
        archs = ", ".join((self.options or {}).get("architectures") or [])
        return f"Training run {self.pk} ({archs or 'no architecture'}, {self.get_status_display().lower()})"

    def clean(self):
        """The stored options must be ones RetrainOptions accepts (the folders are checked by the worker)."""
        try:
            self.options = RetrainOptions.from_json(self.options).validate(check_paths=False).to_json()
        except (TrainingError, TypeError) as exc:
            raise ValidationError({"options": str(exc)}) from exc

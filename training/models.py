from django.conf import settings
from django.db import models, transaction
from django.db.models import Q


class ModelVersion(models.Model):
    """One trained classifier: its file, how it was made and how well it did."""

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
        return cls.objects.filter(is_active=True).first()

    def activate(self):
        """Make this the one active model, switched in one transaction."""
        with transaction.atomic():
            type(self).objects.select_for_update().filter(is_active=True).exclude(pk=self.pk).update(is_active=False)
            type(self).objects.filter(pk=self.pk).update(is_active=True)
        self.is_active = True

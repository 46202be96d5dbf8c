"""How the AI does in practice: one outcome per signed case, and alerts when a site's results slip.

``CaseOutcome`` is the AI's case-level suggestion next to the pathologist's current diagnosis,
written in the transaction that signs (or amends) the case; the performance page and the alerts
aggregate it per referring site and model version. ``MonitoringAlert`` says that a site's recent
agreement fell below what the model version was validated at, or that its images drift away from
the training distribution.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class CaseOutcome(models.Model):
    case = models.OneToOneField("cases.Case", on_delete=models.CASCADE, related_name="outcome")
    site = models.ForeignKey("accounts.Organisation", on_delete=models.PROTECT, related_name="+")
    laboratory = models.ForeignKey("accounts.Organisation", on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(
        "training.ModelVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The version whose result the pathologist saw; empty when the case had no AI analysis.",
    )
    ai_label = models.CharField(
        max_length=40, blank=True, help_text="AI case-level label; empty: none (no result, or no consensus)."
    )
    diagnosis = models.CharField(max_length=20, help_text="The pathologist's current diagnosis.")
    agreed = models.BooleanField(
        null=True,
        blank=True,
        help_text="AI label equals the diagnosis; empty when they cannot be compared (no AI subtype, or the "
        "pathologist found the sample non-diagnostic).",
    )
    flagged = models.BooleanField(
        default=False,
        help_text="Some image carried a flag (outside validated conditions, low confidence, not a smear).",
    )
    images = models.PositiveIntegerField(default=0, help_text="Images with a prediction of this version.")
    ood_images = models.PositiveIntegerField(default=0, help_text="Of those, images with an OOD score.")
    outside_images = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Images whose OOD score is above the version's calibrated threshold; empty: no threshold.",
    )
    ood_mean = models.FloatField(null=True, blank=True)
    ood_max = models.FloatField(null=True, blank=True)
    signed_at = models.DateTimeField(help_text="When the case was first signed.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-signed_at", "-pk"]
        indexes = [
            # The recent window of a site and version, newest first.
            models.Index(fields=["laboratory", "site", "model_version", "-signed_at", "-id"], name="outcome_window"),
        ]

    def __str__(self):
        return f"Outcome of case {self.case_id}: AI {self.ai_label or '-'}, pathologist {self.diagnosis}"


class MonitoringAlert(models.Model):
    class Kind(models.TextChoices):
        AGREEMENT = "agreement", "Agreement below the validated level"
        DRIFT = "drift", "Images drift from the training distribution"

    laboratory = models.ForeignKey("accounts.Organisation", on_delete=models.PROTECT, related_name="+")
    site = models.ForeignKey("accounts.Organisation", on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey("training.ModelVersion", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    message = models.TextField()
    value = models.FloatField(help_text="The measured agreement rate or drift score.")
    limit = models.FloatField(help_text="The level it crossed.")
    window_cases = models.PositiveIntegerField(help_text="Signed cases the value was measured on.")
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_to = models.JSONField(default=list, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(
        null=True, blank=True, help_text="When the condition no longer held; until then no second alert is raised."
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # Not repeated while it lasts: one unresolved alert per laboratory, site, version and kind.
            models.UniqueConstraint(
                fields=["laboratory", "site", "model_version", "kind"],
                condition=Q(resolved_at__isnull=True),
                name="one_unresolved_alert",
            ),
        ]
        indexes = [models.Index(fields=["laboratory", "-created_at", "-id"], name="alert_lab_newest")]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.site} / {self.model_version}"

    @property
    def is_open(self):
        return self.acknowledged_at is None

"""Every version of a case's signed report, kept as the PDF the referring site received.

One version per signed diagnosis (the signature is version 1, each amendment the next), written
once and never rewritten: an amended report does not replace the earlier one, which stays
retrievable with its checksum.
"""

import uuid

from django.db import models


def report_upload_to(version, filename):
    # Internal name only, beside the case's smears.
    return f"reports/{version.case.site_id}/{version.case_id}/{version.number:03d}-{uuid.uuid4().hex}.pdf"


class ReportVersion(models.Model):
    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, related_name="report_versions")
    review = models.OneToOneField("cases.Review", on_delete=models.PROTECT, related_name="report")
    number = models.PositiveIntegerField(help_text="1 for the signature, 2 for the first amendment, …")
    pdf = models.FileField(upload_to=report_upload_to, max_length=255)
    sha256 = models.CharField(max_length=64, help_text="Of the PDF as stored.")
    size_bytes = models.PositiveIntegerField()
    model_version = models.ForeignKey(
        "training.ModelVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The AI model version whose result the report shows; empty when there was none.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The optional push to the hospital's FHIR server (TELEDIAG_FHIR_PUSH_URL).
    fhir_pushed_at = models.DateTimeField(null=True, blank=True, help_text="When the FHIR server accepted it.")
    fhir_push_attempts = models.PositiveIntegerField(default=0)
    fhir_push_error = models.TextField(blank=True, help_text="Why the last push failed; empty once one works.")

    class Meta:
        ordering = ["case", "number"]
        constraints = [models.UniqueConstraint(fields=["case", "number"], name="one_report_version_number_per_case")]

    def __str__(self):
        return f"Report of {self.case} v{self.number}"

    @property
    def is_amended(self):
        return self.number > 1

    @property
    def filename(self):
        return f"{self.case.reference}-report-v{self.number}.pdf"

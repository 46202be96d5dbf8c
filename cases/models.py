import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Case as Conditional, F, IntegerField, Q, Value, When
from django.urls import reverse

from accounts.models import Organisation
from security.choices import SignatureMethod


class Diagnosis(models.TextChoices):
    """What a pathologist can sign. The AI suggests only the first four."""

    BENIGN = "benign", "Benign (hematogone)"
    EARLY_PRE_B = "early_pre_b", "Early Pre-B ALL"
    PRE_B = "pre_b", "Pre-B ALL"
    PRO_B = "pro_b", "Pro-B ALL"
    NON_DIAGNOSTIC = "non_diagnostic", "Non-diagnostic — new sample needed"


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField("medical record number", max_length=64)
    given_name = models.CharField(max_length=120)
    family_name = models.CharField(max_length=120)
    sex = models.CharField(max_length=1, choices=Sex.choices)
    date_of_birth = models.DateField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["family_name", "given_name", "mrn"]
        constraints = [models.UniqueConstraint(fields=["organisation", "mrn"], name="unique_mrn_per_organisation")]
        indexes = [
            models.Index(fields=["organisation", "family_name", "given_name", "mrn", "id"], name="patient_org_by_name"),
            models.Index(fields=["mrn"], name="patient_mrn"),  # case search by MRN across a laboratory's sites
            models.Index(fields=["organisation", "-created_at", "-id"], name="patient_org_newest"),  # case form
        ]

    def __str__(self):
        return f"{self.family_name}, {self.given_name} ({self.mrn})"

    @property
    def full_name(self):
        return f"{self.given_name} {self.family_name}"


def urgent_first():
    """0 for urgent cases, 1 for routine ones: the review queue's first sort key (and its index's)."""
    return Conditional(When(priority="urgent", then=Value(0)), default=Value(1), output_field=IntegerField())


class Case(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        ANALYSING = "analysing", "Analysing"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        SIGNED = "signed", "Signed"
        AMENDED = "amended", "Amended"

    class Priority(models.TextChoices):
        ROUTINE = "routine", "Routine"
        URGENT = "urgent", "Urgent"

    # The only moves a case can make; services enforce them with a conditional update.
    # A pathologist may sign before the AI has finished: the AI only advises.
    TRANSITIONS = {
        Status.SUBMITTED: {Status.ANALYSING, Status.AWAITING_REVIEW, Status.SIGNED},
        Status.ANALYSING: {Status.AWAITING_REVIEW, Status.SUBMITTED, Status.SIGNED},
        Status.AWAITING_REVIEW: {Status.ANALYSING, Status.SIGNED},
        Status.SIGNED: {Status.AMENDED},
        Status.AMENDED: {Status.AMENDED},
    }
    FINAL_STATUSES = {Status.SIGNED, Status.AMENDED}

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cases")
    site = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="submitted_cases")
    laboratory = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="referred_cases")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    clinical_notes = models.TextField(blank=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.ROUTINE)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED)
    requested_model_version = models.ForeignKey(
        "training.ModelVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Model chosen at submission; empty means the active model.",
    )
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    signed_at = models.DateTimeField(null=True, blank=True)
    # The pathologist who took the case from the queue ("assigned to me"); empty: anyone may read it.
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    # Kept by inference (inference.flagging) whenever a prediction, failure or retry changes it, so
    # the queue's "flagged" filter is an index condition rather than a walk over images and jobs.
    ai_flagged = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="The AI wants a second look: a flagged or not-a-smear image, or a failed analysis.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["laboratory", "status", "priority", "created_at"]),
            # One per list: its filter, then its order, so a page is read straight off the index.
            models.Index(fields=["site", "-created_at", "-id"], name="case_site_newest"),
            models.Index(fields=["laboratory", "-created_at", "-id"], name="case_lab_newest"),
            models.Index(fields=["site", "status", "-created_at", "-id"], name="case_site_status_newest"),
            models.Index(
                F("laboratory"),
                urgent_first(),
                F("created_at"),
                F("id"),
                condition=~Q(status__in=["signed", "amended"]),
                name="case_review_queue",
            ),
            # The queue's "flagged" filter: the same order, over the flagged unsigned cases only.
            models.Index(
                F("laboratory"),
                urgent_first(),
                F("created_at"),
                F("id"),
                condition=~Q(status__in=["signed", "amended"]) & Q(ai_flagged=True),
                name="case_review_queue_flagged",
            ),
        ]

    def __str__(self):
        return f"Case {self.reference}"

    @property
    def reference(self):
        return f"TD-{self.pk:06d}" if self.pk else "TD-new"

    def get_absolute_url(self):
        return reverse("case-detail", args=[self.pk])

    @property
    def is_final(self):
        return self.status in self.FINAL_STATUSES

    @property
    def current_diagnosis(self):
        if "diagnoses" in getattr(self, "_prefetched_objects_cache", {}):  # lists prefetch them (cases.listing)
            return max(self.diagnoses.all(), key=lambda review: (review.signed_at, review.pk), default=None)
        return self.diagnoses.order_by("-signed_at", "-pk").first()


def smear_upload_to(smear, filename):
    # Internal name only: the uploaded name is untrusted and kept as metadata.
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"smears/{smear.case.site_id}/{smear.case_id}/{uuid.uuid4().hex}.{extension}"


class Smear(models.Model):
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="smears")
    image = models.FileField(upload_to=smear_upload_to, max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True, help_text="Of the file as uploaded.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10, help_text="Format detected from the content.")
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case", "pk"]

    def __str__(self):
        return f"Smear {self.pk} of {self.case}"


class Review(models.Model):
    """A signed diagnosis. The first is the signature; each later one is an amendment."""

    class Kind(models.TextChoices):
        SIGNATURE = "signature", "Signature"
        AMENDMENT = "amendment", "Amendment"

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="diagnoses")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    diagnosis = models.CharField(max_length=20, choices=Diagnosis.choices)
    comment = models.TextField(blank=True)
    reason = models.TextField(blank=True, help_text="Why an amendment was needed.")
    ai_suggestion = models.CharField(max_length=20, blank=True, help_text="AI label shown when signing.")
    supersedes = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="superseded_by"
    )
    signed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signed_at = models.DateTimeField()

    SignatureMethod = SignatureMethod

    # How the signer proved it was them when signing (electronic signature); blank before it was asked.
    signature_method = models.CharField(max_length=16, choices=SignatureMethod.choices, blank=True)

    class Meta:
        ordering = ["case", "signed_at", "pk"]
        constraints = [
            # Database backstop for concurrent signing: one signature per case.
            models.UniqueConstraint(fields=["case"], condition=Q(kind="signature"), name="one_signature_per_case"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} of {self.case}: {self.get_diagnosis_display()}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("A signed diagnosis is read-only; record an amendment instead.")
        super().save(*args, **kwargs)

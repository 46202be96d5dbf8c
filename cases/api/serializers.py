"""API serializers: they check the shape of input and present output; rules live in cases.services.

Extending the case representation (the inference work adds AI results): subclass
``SmearSerializer`` or ``CaseSerializer`` and add fields, or add a field here; the case detail
is built from ``CaseSerializer`` and each smear from ``SmearSerializer``.
"""

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.utils import html

from accounts.api import OrganisationRefSerializer, UserRefSerializer
from accounts.models import Organisation
from audit.models import AuditEvent
from cases.access import laboratories_for, patients_visible_to
from cases.models import Case, Diagnosis, Patient, Review, Smear
from core.api import MAX_ID, StrictFieldsMixin
from training.models import ModelVersion

MAX_TEXT = 20_000


def smear_image_url(smear, request=None):
    """Address of the API's image view for one smear (absolute when a request is known)."""
    path = reverse("api-smear-image", kwargs={"pk": smear.pk})
    return request.build_absolute_uri(path) if request is not None else path


# --------------------------------------------------------------------------------------------
# Patients


class PatientSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "mrn", "given_name", "family_name", "sex", "date_of_birth", "created_at"]
        read_only_fields = ["id", "created_at"]


# --------------------------------------------------------------------------------------------
# Cases: output


class SmearSerializer(serializers.ModelSerializer):
    image_url = serializers.SerializerMethodField(
        help_text="The image, served to authenticated users who may see the case."
    )

    class Meta:
        model = Smear
        fields = [
            "id",
            "original_filename",
            "width",
            "height",
            "format",
            "size_bytes",
            "sha256",
            "created_at",
            "image_url",
        ]
        read_only_fields = fields

    def get_image_url(self, smear) -> str:
        return smear_image_url(smear, self.context.get("request"))


class DiagnosisEntrySerializer(serializers.ModelSerializer):
    """One signed diagnosis: the signature, or a later amendment (with its reason)."""

    diagnosis_label = serializers.CharField(source="get_diagnosis_display", read_only=True)
    signed_by = UserRefSerializer(read_only=True)

    class Meta:
        model = Review
        fields = [
            "id",
            "kind",
            "diagnosis",
            "diagnosis_label",
            "comment",
            "reason",
            "ai_suggestion",
            "supersedes",
            "signed_by",
            "signed_at",
            "signature_method",
        ]
        read_only_fields = fields


class CaseSummarySerializer(serializers.ModelSerializer):
    """A case in lists: who, where, its state and current diagnosis, without images and history."""

    reference = serializers.CharField(read_only=True)
    patient = PatientSerializer(read_only=True)
    site = OrganisationRefSerializer(read_only=True)
    laboratory = OrganisationRefSerializer(read_only=True)
    submitted_by = UserRefSerializer(read_only=True)
    signed_by = UserRefSerializer(read_only=True, allow_null=True)
    model_version = serializers.PrimaryKeyRelatedField(
        source="requested_model_version", read_only=True, allow_null=True
    )
    # A declared nested serializer is built once per list; building one per row in a method field
    # cost ~2 ms of CPU a case (80% of a 25-case page).
    current_diagnosis = DiagnosisEntrySerializer(read_only=True, allow_null=True)

    class Meta:
        model = Case
        fields = [
            "id",
            "reference",
            "status",
            "priority",
            "patient",
            "site",
            "laboratory",
            "submitted_by",
            "model_version",
            "signed_by",
            "signed_at",
            "current_diagnosis",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CaseSerializer(CaseSummarySerializer):
    """A case in full: notes, every smear image and the history of signed diagnoses."""

    smears = SmearSerializer(many=True, read_only=True)
    diagnoses = DiagnosisEntrySerializer(many=True, read_only=True)

    class Meta(CaseSummarySerializer.Meta):
        fields = [*CaseSummarySerializer.Meta.fields, "clinical_notes", "smears", "diagnoses"]
        read_only_fields = fields


class CaseCreatedSerializer(serializers.Serializer):
    """The minimal answer to a submission sent with ``Prefer: return=minimal`` (RFC 7240)."""

    id = serializers.IntegerField(read_only=True)
    reference = serializers.CharField(read_only=True)
    status = serializers.CharField(read_only=True)
    url = serializers.SerializerMethodField()

    def get_url(self, case) -> str:
        path = reverse("api-case-detail", args=[case.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


# --------------------------------------------------------------------------------------------
# Cases: input


def _is_uploaded_file(value):
    return hasattr(value, "read") and hasattr(value, "name") and hasattr(value, "size")


@extend_schema_field({"type": "array", "items": {"type": "string", "format": "binary"}})
class SmearFilesField(serializers.Field):
    """The ``images`` of a multipart upload: one or more files (repeat the field)."""

    default_error_messages = {
        "required": "Attach at least one smear image (repeat the images field for several).",
        "not_a_file": "Send images as files of a multipart/form-data upload; item {positions} is not a file.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("write_only", True)
        super().__init__(**kwargs)

    def get_value(self, dictionary):
        if html.is_html_input(dictionary):
            values = dictionary.getlist(self.field_name)
            return values if values else empty
        return dictionary.get(self.field_name, empty)

    def to_internal_value(self, data):
        items = data if isinstance(data, (list, tuple)) else [data]
        items = [item for item in items if item not in ("", None)]
        if not items:
            self.fail("required")
        bad = [str(position) for position, item in enumerate(items, start=1) if not _is_uploaded_file(item)]
        if bad:
            self.fail("not_a_file", positions=", ".join(bad))
        return items

    def to_representation(self, value):  # pragma: no cover - write-only
        return None


class CaseCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    patient = serializers.PrimaryKeyRelatedField(
        queryset=Patient.objects.none(), help_text="A patient registered at your organisation."
    )
    clinical_notes = serializers.CharField(required=False, allow_blank=True, max_length=MAX_TEXT, default="")
    priority = serializers.ChoiceField(choices=Case.Priority.choices, default=Case.Priority.ROUTINE)
    laboratory = serializers.PrimaryKeyRelatedField(
        queryset=Organisation.objects.none(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Reading laboratory to send the case to; required when your site refers to several.",
    )
    model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Model to analyse the smears with; empty means the active model.",
    )
    images = SmearFilesField(help_text="Smear images (JPEG, PNG, TIFF or BMP); repeat the field for several.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            # Other organisations' patients and laboratories look exactly like ids that do not exist.
            self.fields["patient"].queryset = patients_visible_to(request.user)
            self.fields["laboratory"].queryset = laboratories_for(request.user)


class ElectronicSignatureFields(serializers.Serializer):
    # The electronic signature: one of the two, entered again for this signature.
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        write_only=True,
        trim_whitespace=False,
        max_length=128,
        style={"input_type": "password"},
        help_text="Your password, entered again to sign (or send otp_code).",
    )
    otp_code = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        write_only=True,
        max_length=16,
        help_text="A current code from your authenticator app, instead of the password.",
    )


class SignSerializer(StrictFieldsMixin, ElectronicSignatureFields):
    diagnosis = serializers.ChoiceField(choices=Diagnosis.choices)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=MAX_TEXT, default="")


class AmendSerializer(StrictFieldsMixin, ElectronicSignatureFields):
    diagnosis = serializers.ChoiceField(choices=Diagnosis.choices)
    reason = serializers.CharField(max_length=MAX_TEXT, help_text="Why the signed diagnosis is amended.")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=MAX_TEXT, default="")


# --------------------------------------------------------------------------------------------
# Query parameters


class CaseFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Case.Status.choices, required=False, allow_blank=True)
    priority = serializers.ChoiceField(choices=Case.Priority.choices, required=False, allow_blank=True)
    patient = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only this patient's cases."
    )
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="A case reference (TD-000123 or 123) or a patient's medical record number (exact).",
    )


class AuditEventFilterSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=AuditEvent.Action.choices, required=False, allow_blank=True)
    case = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only events about this case."
    )
    actor = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only events by this user."
    )


# --------------------------------------------------------------------------------------------
# Audit trail


class AuditEventSerializer(serializers.ModelSerializer):
    actor = UserRefSerializer(read_only=True, allow_null=True)
    actor_organisation = OrganisationRefSerializer(read_only=True, allow_null=True)
    detail = serializers.JSONField(read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "action",
            "actor",
            "actor_organisation",
            "case",
            "patient",
            "ip_address",
            "detail",
        ]
        read_only_fields = fields


__all__ = [
    "AmendSerializer",
    "AuditEventFilterSerializer",
    "AuditEventSerializer",
    "CaseCreateSerializer",
    "CaseCreatedSerializer",
    "CaseFilterSerializer",
    "CaseSerializer",
    "CaseSummarySerializer",
    "DiagnosisEntrySerializer",
    "PatientSerializer",
    "SignSerializer",
    "SmearFilesField",
    "SmearSerializer",
    "smear_image_url",
]

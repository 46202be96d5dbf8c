"""Portal forms. They only collect and shape input: every write goes through cases.services."""

import uuid

from django import forms
from django.utils import timezone

from cases.access import laboratories_for, patients_visible_to
from cases.models import Case, Diagnosis, Patient
from core.forms import BootstrapFormMixin
from training.models import ModelVersion


class PatientSearchForm(BootstrapFormMixin, forms.Form):
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=120,
        widget=forms.TextInput(attrs={"placeholder": "Name or medical record number", "type": "search"}),
    )


class PatientForm(BootstrapFormMixin, forms.Form):
    mrn = forms.CharField(label="Medical record number", max_length=64)
    given_name = forms.CharField(max_length=120)
    family_name = forms.CharField(max_length=120)
    sex = forms.ChoiceField(choices=Patient.Sex.choices)
    date_of_birth = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))

    def clean_date_of_birth(self):
        value = self.cleaned_data["date_of_birth"]
        if value > timezone.localdate():
            raise forms.ValidationError("The date of birth is in the future.")
        return value


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files from one <input type=file multiple>. Content checks happen in the service."""

    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else ([data] if data else [])
        files = [f for f in files if f]
        if not files:
            if self.required:
                raise forms.ValidationError("Choose at least one smear image.", code="required")
            return []
        return [super(MultipleImageField, self).clean(f, initial) for f in files]


class CaseForm(BootstrapFormMixin, forms.Form):
    patient = forms.ModelChoiceField(queryset=Patient.objects.none(), empty_label="Choose a patient…")
    laboratory = forms.ModelChoiceField(
        queryset=None,
        label="Reading laboratory",
        empty_label="Choose a laboratory…",
        help_text="Your site refers to several laboratories: choose the one that reads this case.",
    )
    priority = forms.ChoiceField(
        choices=Case.Priority.choices,
        initial=Case.Priority.ROUTINE,
        widget=forms.RadioSelect,
    )
    clinical_notes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "placeholder": "History, blood count, reason for referral…"}),
    )
    model_version = forms.ModelChoiceField(
        queryset=None,
        required=False,
        label="AI model",
        empty_label="The active model (recommended)",
        help_text="Choose another registered model version only for a comparison or a study.",
    )
    # One-time token of this form (cases.submit_once): a second submission of it creates nothing.
    submission_token = forms.CharField(required=False, widget=forms.HiddenInput, max_length=255)
    images = MultipleImageField(
        label="Smear images",
        help_text="Select one or more images of the blood smear. If any file cannot be used, nothing is submitted.",
        widget=MultipleFileInput(attrs={"accept": "image/*,.tif,.tiff"}),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("submission_token", uuid.uuid4().hex)
        self.fields["patient"].queryset = patients_visible_to(user)
        self._limit_patient_choices(patients_visible_to(user))
        laboratories = laboratories_for(user)
        self.laboratory_count = laboratories.count()
        if self.laboratory_count > 1:
            self.fields["laboratory"].queryset = laboratories
        else:
            # One laboratory (or none, which the service explains): nothing to choose.
            del self.fields["laboratory"]
        versions = ModelVersion.objects.order_by("-is_active", "-created_at")
        if versions.count() > 1:
            self.fields["model_version"].queryset = versions
        else:
            del self.fields["model_version"]

    PATIENT_CHOICES = 100

    def _limit_patient_choices(self, patients):
        """List the chosen patient and the most recently registered ones, never every patient of the site
        (tens of thousands over the years); any visible patient is still accepted."""
        field = self.fields["patient"]
        chosen = self.data.get(self.add_prefix("patient")) if self.is_bound else self.initial.get("patient")
        chosen = getattr(chosen, "pk", chosen)
        recent = list(patients.order_by("-created_at", "-pk")[: self.PATIENT_CHOICES])
        if chosen and str(chosen).isdigit() and all(str(p.pk) != str(chosen) for p in recent):
            recent = list(patients.filter(pk=chosen)) + recent
        recent.sort(key=lambda p: (p.family_name, p.given_name, p.mrn, p.pk))
        field.widget.choices = [("", field.empty_label), *((p.pk, str(p)) for p in recent)]
        if len(recent) >= self.PATIENT_CHOICES:
            field.help_text = (
                f"The {self.PATIENT_CHOICES} most recently registered patients are listed. For another, find the "
                "patient on the Patients page and choose “New case” there."
            )


class ElectronicSignatureMixin(forms.Form):
    """The signer's password or a current authenticator code, entered again to sign (e-signature)."""

    password = forms.CharField(
        label="Your password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Signing is your electronic signature: enter your password, or a code from your authenticator app.",
    )
    otp_code = forms.CharField(
        label="Or a code from your authenticator app",
        required=False,
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def signature_credentials(self):
        return {"password": self.cleaned_data.get("password", ""), "otp_code": self.cleaned_data.get("otp_code", "")}

    def service_data(self):
        return {k: v for k, v in self.cleaned_data.items() if k not in ("password", "otp_code")}


class SignForm(BootstrapFormMixin, ElectronicSignatureMixin, forms.Form):
    diagnosis = forms.ChoiceField(label="Final diagnosis", choices=Diagnosis.choices, widget=forms.RadioSelect)
    comment = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "Morphology, findings, recommendations…"}),
    )


class AmendForm(BootstrapFormMixin, ElectronicSignatureMixin, forms.Form):
    diagnosis = forms.ChoiceField(label="Amended diagnosis", choices=Diagnosis.choices, widget=forms.RadioSelect)
    reason = forms.CharField(
        label="Reason for the amendment",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Why the signed diagnosis is being corrected"}),
    )
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why the signed diagnosis is amended.")
        return reason


class CaseFilterForm(BootstrapFormMixin, forms.Form):
    q = forms.CharField(
        label="Case or MRN",
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": "TD-000123 or medical record number", "type": "search"}),
    )
    status = forms.ChoiceField(choices=[("", "All statuses"), *Case.Status.choices], required=False)
    priority = forms.ChoiceField(choices=[("", "All priorities"), *Case.Priority.choices], required=False)

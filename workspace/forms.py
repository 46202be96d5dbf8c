"""The review queue's filters. They only shape input; workspace.queue turns them into a query."""

from django import forms

from accounts.models import Organisation
from core.forms import BootstrapFormMixin


class QueueFilterForm(BootstrapFormMixin, forms.Form):
    q = forms.CharField(
        label="Case or MRN",
        required=False,
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": "TD-000123 or MRN", "type": "search"}),
    )
    urgent = forms.BooleanField(label="Urgent only", required=False)
    flagged = forms.BooleanField(label="Flagged by the AI", required=False)
    mine = forms.BooleanField(label="Assigned to me", required=False)
    site = forms.ModelChoiceField(
        label="Referring site", queryset=Organisation.objects.none(), required=False, empty_label="All sites"
    )
    date_from = forms.DateField(label="Submitted from", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="Submitted until", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # The sites that refer to the pathologist's laboratory (a handful: one small query).
        self.fields["site"].queryset = Organisation.objects.filter(
            referral_links__laboratory_id=user.organisation_id
        ).order_by("name")
        for name in ("urgent", "flagged", "mine"):
            self.fields[name].widget.attrs["class"] = "form-check-input"

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end of the range is before its start.")
        return data

    @property
    def active(self):
        """True when any filter narrows the queue (for the "Clear" link)."""
        return self.is_bound and any(v not in (None, "", False) for v in self.cleaned_data.values())

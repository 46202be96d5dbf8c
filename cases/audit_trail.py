"""The audit trail page's filters and its CSV export.

Filters: who (username), which case (TD-000123 or 123), a date range and the kind of event. The
export streams every matching event, newest first, read in keyset batches over the
(created_at, id) order: memory stays at one batch whatever the trail holds.
"""

import csv
import json
from datetime import UTC, datetime, time, timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditEvent
from cases.access import CASE_REFERENCE
from core.forms import BootstrapFormMixin

EXPORT_BATCH = 1000
CSV_COLUMNS = ["time_utc", "user", "user_organisation", "action", "case", "patient_mrn", "details", "ip_address"]
# A cell starting with one of these runs as a formula in a spreadsheet: such cells get a leading '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class AuditFilterForm(BootstrapFormMixin, forms.Form):
    user = forms.CharField(label="User", required=False, max_length=150, widget=forms.TextInput({"type": "search"}))
    case = forms.CharField(
        label="Case",
        required=False,
        max_length=24,
        widget=forms.TextInput({"type": "search", "placeholder": "TD-000123"}),
    )
    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput({"type": "date"}, "%Y-%m-%d"))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput({"type": "date"}, "%Y-%m-%d"))
    action = forms.ChoiceField(label="Event", required=False, choices=[("", "All events"), *AuditEvent.Action.choices])

    def clean_user(self):
        username = self.cleaned_data["user"].strip()
        if not username:
            return None
        user = get_user_model().objects.filter(username__iexact=username).first()
        if user is None:
            raise forms.ValidationError("No user has this username.")
        return user

    def clean_case(self):
        reference = self.cleaned_data["case"].strip()
        if not reference:
            return None
        match = CASE_REFERENCE.match(reference)
        if not match:
            raise forms.ValidationError("Type a case reference such as TD-000123.")
        return int(match.group(1))

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data


def filter_events(events, form):
    """``events`` narrowed by a valid AuditFilterForm (dates are whole days in the portal's time zone)."""
    data = form.cleaned_data
    if data.get("user"):
        events = events.filter(actor=data["user"])
    if data.get("case") is not None:
        events = events.filter(case_id=data["case"])
    if data.get("action"):
        events = events.filter(action=data["action"])
    if data.get("date_from"):
        events = events.filter(created_at__gte=_start_of(data["date_from"]))
    if data.get("date_to"):
        events = events.filter(created_at__lt=_start_of(data["date_to"] + timedelta(days=1)))
    return events


def _start_of(day):
    return timezone.make_aware(datetime.combine(day, time.min))


class _Echo:
    """csv.writer's file: each row comes back as text for the streaming response."""

    def write(self, value):
        return value


def csv_lines(events):
    """The header and one CSV line per event, newest first, read ``EXPORT_BATCH`` rows at a time."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    events = events.select_related("actor", "actor_organisation", "case", "patient").order_by("-created_at", "-pk")
    last = None
    while True:
        batch = events
        if last is not None:
            stamp, pk = last
            batch = events.filter(Q(created_at__lt=stamp) | Q(created_at=stamp, pk__lt=pk))
        rows = list(batch[:EXPORT_BATCH])
        for event in rows:
            yield writer.writerow(_safe(value) for value in _row(event))
        if len(rows) < EXPORT_BATCH:
            return
        last = (rows[-1].created_at, rows[-1].pk)


def _row(event):
    return [
        event.created_at.astimezone(UTC).isoformat(),
        event.actor.username if event.actor else "system",
        str(event.actor_organisation) if event.actor_organisation else "",
        event.action,
        event.case.reference if event.case else "",
        event.patient.mrn if event.patient else "",
        json.dumps(event.detail, sort_keys=True, ensure_ascii=False) if event.detail else "",
        event.ip_address or "",
    ]


def _safe(value):
    value = str(value)
    return "'" + value if value.startswith(FORMULA_START) else value

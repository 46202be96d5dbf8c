"""Lists that stay fast at millions of rows: capped page counts, keyset pages, per-page extras.

Every list reads one page of rows through an index that matches its filter and ordering; what a
row shows beside its own columns (image count, current diagnosis) is read for that page only, in a
fixed number of queries whatever the page holds.
"""

import base64
import binascii
from datetime import datetime

from django.core.exceptions import BadRequest
from django.db.models import Count, Prefetch, Q

from cases.models import Case, Review, Smear
from core.pagination import CappedPaginator


def paginate(request, queryset, per_page):
    return CappedPaginator(queryset, per_page).get_page(request.GET.get("page"))


def current_diagnoses():
    """Prefetch of the signed diagnoses, so ``Case.current_diagnosis`` reads no more rows."""
    return Prefetch("diagnoses", queryset=Review.objects.order_by("signed_at", "pk"))


def with_smear_counts(cases):
    """Set ``smear_count`` on each case of a page with one grouped query (no join over the list)."""
    cases = list(cases)
    if cases:
        counts = dict(
            Smear.objects.filter(case_id__in=[case.pk for case in cases])
            .order_by()
            .values_list("case_id")
            .annotate(n=Count("pk"))
        )
        for case in cases:
            case.smear_count = counts.get(case.pk, 0)
    return cases


def with_case_counts(patients):
    """Set ``case_count`` on each patient of a page with one grouped query."""
    patients = list(patients)
    if patients:
        counts = dict(
            Case.objects.filter(patient_id__in=[patient.pk for patient in patients])
            .order_by()
            .values_list("patient_id")
            .annotate(n=Count("pk"))
        )
        for patient in patients:
            patient.case_count = counts.get(patient.pk, 0)
    return patients


def case_page(request, cases, per_page):
    """One page of a case list with its image counts and current diagnoses."""
    page = paginate(request, cases.prefetch_related(current_diagnoses()), per_page)
    page.object_list = with_smear_counts(page.object_list)
    return page


# --------------------------------------------------------------------------------------------------
# Keyset pages for the portal (newest first): ?before=TOKEN for older rows, ?after=TOKEN for newer.


def _encode(row, field="created_at"):
    value = getattr(row, field)
    if value is None:  # a row without a date cannot mark a position: no link from it
        return None
    raw = f"{value.isoformat()}|{row.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token):
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, pk = raw.rsplit("|", 1)
        return datetime.fromisoformat(stamp), int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("This page link is damaged; start again from the newest entries.") from None


class KeysetPage:
    """Rows newest first, read through a (date-time, id) index: no count, no OFFSET."""

    def __init__(self, rows, *, newer, older, is_first):
        self.object_list = rows
        self.newer_token = newer
        self.older_token = older
        self.is_first = is_first

    def __iter__(self):
        return iter(self.object_list)

    def __len__(self):
        return len(self.object_list)


def keyset_page(request, queryset, per_page, field="created_at"):
    """The page of ``queryset`` (newest ``field`` first) that ``?before=`` / ``?after=`` point at."""
    before, after = request.GET.get("before"), request.GET.get("after")
    if before:
        stamp, pk = _decode(before)
        rows = list(
            queryset.filter(Q(**{f"{field}__lt": stamp}) | Q(**{field: stamp, "pk__lt": pk})).order_by(
                f"-{field}", "-pk"
            )[: per_page + 1]
        )
        has_older, has_newer = len(rows) > per_page, True
        rows = rows[:per_page]
    elif after:
        stamp, pk = _decode(after)
        rows = list(
            queryset.filter(Q(**{f"{field}__gt": stamp}) | Q(**{field: stamp, "pk__gt": pk})).order_by(field, "pk")[
                : per_page + 1
            ]
        )
        has_newer, has_older = len(rows) > per_page, True
        rows = rows[:per_page][::-1]
    else:
        rows = list(queryset.order_by(f"-{field}", "-pk")[: per_page + 1])
        has_older, has_newer = len(rows) > per_page, False
        rows = rows[:per_page]
    return KeysetPage(
        rows,
        newer=_encode(rows[0], field) if rows and has_newer else None,
        older=_encode(rows[-1], field) if rows and has_older else None,
        is_first=not has_newer,
    )

"""Per site and model version: all signed cases, and the window of the most recent ones.

Everything is aggregated in the database, one query per question whatever the number of sites,
versions or cases: a row per (site, version) comes back, never a row per case.
"""

from django.conf import settings
from django.db.models import Count, F, Q, Sum, Window
from django.db.models.functions import RowNumber

from monitoring.models import CaseOutcome

TOTALS = {
    "cases": Count("pk"),
    "compared": Count("pk", filter=Q(agreed__isnull=False)),
    "agreed": Count("pk", filter=Q(agreed=True)),
    "flagged": Count("pk", filter=Q(flagged=True)),
    # Drift: only outcomes whose version had a threshold when they were recorded.
    "drift_cases": Count("pk", filter=Q(outside_images__isnull=False, ood_images__gt=0)),
    "drift_images": Sum("ood_images", filter=Q(outside_images__isnull=False)),
    "outside_images": Sum("outside_images"),
}


def window_size():
    return max(1, settings.MONITORING_WINDOW_CASES)


def _outcomes(laboratory_id, site_id=None, version_id=None):
    outcomes = CaseOutcome.objects.filter(laboratory_id=laboratory_id, model_version__isnull=False)
    if site_id is not None:
        outcomes = outcomes.filter(site_id=site_id)
    if version_id is not None:
        outcomes = outcomes.filter(model_version_id=version_id)
    return outcomes


def _by_key(rows):
    return {(row.pop("site_id"), row.pop("model_version_id")): row for row in rows}


def totals(laboratory_id, **filters):
    """{(site id, version id): counts} over every signed case referred to the laboratory."""
    rows = _outcomes(laboratory_id, **filters).values("site_id", "model_version_id").annotate(**TOTALS).order_by()
    return _by_key(rows)


def recent(laboratory_id, size=None, **filters):
    """The same counts over the last ``size`` signed cases of each site and version."""
    size = size or window_size()
    ranked = (
        _outcomes(laboratory_id, **filters)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("site_id"), F("model_version_id")],
                order_by=[F("signed_at").desc(), F("pk").desc()],
            )
        )
        .filter(rank__lte=size)
    )
    rows = (
        CaseOutcome.objects.filter(pk__in=ranked.values("pk"))
        .values("site_id", "model_version_id")
        .annotate(**TOTALS)
        .order_by()
    )
    return _by_key(rows)


def confusion(laboratory_id, **filters):
    """{(site id, version id): {(ai label, diagnosis): count}}."""
    result = {}
    rows = (
        _outcomes(laboratory_id, **filters)
        .values("site_id", "model_version_id", "ai_label", "diagnosis")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        result.setdefault((row["site_id"], row["model_version_id"]), {})[(row["ai_label"], row["diagnosis"])] = row["n"]
    return result

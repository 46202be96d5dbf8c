"""The model performance report of a reading laboratory: one row per referring site and model
version, for the portal page and the API alike. A constant number of queries (see windows)."""

from django.conf import settings
from django.http import Http404

from accounts.models import Organisation, ReferralLink
from cases.models import Diagnosis
from core import permissions
from monitoring import assessment, windows
from monitoring.models import MonitoringAlert
from monitoring.stats import proportion, wilson_interval
from monitoring.versions import heavy_version_fields, validated_accuracy, versions_with_metrics

NO_SUBTYPE = ""  # the AI gave no case-level subtype (no result, no consensus)


def label_name(label):
    if label == NO_SUBTYPE:
        return "No AI subtype"
    if label == "not_a_smear":
        return "Not a blood smear"
    try:
        return Diagnosis(label).label
    except ValueError:
        return label.replace("_", " ").capitalize()


def _confusion(cells, class_names):
    ai_labels = [name for name in class_names if name]
    ai_labels += sorted({ai for ai, _ in cells if ai not in ai_labels and ai != NO_SUBTYPE})
    if any(ai == NO_SUBTYPE for ai, _ in cells):
        ai_labels.append(NO_SUBTYPE)
    diagnoses = list(Diagnosis.values)
    return {
        "diagnoses": [{"value": value, "name": label_name(value)} for value in diagnoses],
        "rows": [
            {
                "ai_label": label,
                "name": label_name(label),
                "counts": [cells.get((label, diagnosis), 0) for diagnosis in diagnoses],
            }
            for label in ai_labels
        ],
    }


def alert_dict(alert):
    """An open alert as the report and the banner show it (datetimes: the API renders them ISO 8601)."""
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "kind_display": alert.get_kind_display(),
        "site": {"id": alert.site_id, "name": alert.site.name},
        "model_version": {"id": alert.model_version_id, "name": alert.model_version.name},
        "message": alert.message,
        "value": alert.value,
        "limit": alert.limit,
        "window_cases": alert.window_cases,
        "created_at": alert.created_at,
        "resolved_at": alert.resolved_at,
    }


def report_for(user, site=None):
    """The report of the user's laboratory; 403 for roles other than lab admin, 404 for a site
    that does not refer to it (another organisation's ids are never confirmed)."""
    permissions.require_role(permissions.reads_model_performance(user))
    laboratory = user.organisation
    site_id = referring_site(laboratory, site) if site not in (None, "") else None
    return laboratory_report(laboratory, site_id=site_id)


def referring_site(laboratory, site):
    try:
        site_id = int(site)
    except (TypeError, ValueError):
        raise Http404("No such site.") from None
    if not ReferralLink.objects.filter(site_id=site_id, laboratory=laboratory).exists():
        raise Http404("No such site.")
    return site_id


def open_alerts(laboratory_id):
    """Unacknowledged alerts of the laboratory, newest first."""
    return list(
        MonitoringAlert.objects.filter(laboratory_id=laboratory_id, acknowledged_at__isnull=True)
        .select_related("site", "model_version")
        .defer(*heavy_version_fields("model_version__"))
    )


def laboratory_report(laboratory, *, site_id=None):
    """The report of ``laboratory`` (all referring sites, or the one ``site_id``: see referring_site)."""
    filters = {"site_id": site_id} if site_id is not None else {}
    all_time = windows.totals(laboratory.pk, **filters)
    recent = windows.recent(laboratory.pk, **filters)
    cells = windows.confusion(laboratory.pk, **filters)
    versions = versions_with_metrics({version_id for _, version_id in all_time})
    sites = dict(Organisation.objects.filter(pk__in={site_id for site_id, _ in all_time}).values_list("pk", "name"))
    alerts = open_alerts(laboratory.pk)

    rows = []
    for (site_id, version_id), counts in sorted(all_time.items(), key=lambda item: (sites[item[0][0]], -item[0][1])):
        version = versions[version_id]
        low, high = wilson_interval(counts["agreed"], counts["compared"])
        window = recent.get((site_id, version_id), {})
        validated, validated_n = validated_accuracy(version)
        recent_agreement = assessment.agreement(window)
        check = assessment.agreement_alert(window, version)
        recent_agreement["below_validated"] = check[0] if check else None
        rows.append(
            {
                "site": {"id": site_id, "name": sites[site_id]},
                "model_version": {
                    "id": version_id,
                    "name": version.name,
                    "is_active": version.is_active,
                    "validated_accuracy": validated,
                    "validated_n": validated_n,
                },
                "cases_signed": counts["cases"],
                "compared": counts["compared"],
                "agreed": counts["agreed"],
                "agreement_rate": proportion(counts["agreed"], counts["compared"]),
                "agreement_ci": {"low": low, "high": high, "level": 0.95},
                "flagged": counts["flagged"],
                "flagged_rate": proportion(counts["flagged"], counts["cases"]),
                "recent": {"cases": window.get("cases", 0), **recent_agreement},
                "drift": assessment.drift(window, version),
                "confusion": _confusion(cells.get((site_id, version_id), {}), version.class_names or []),
                "open_alerts": [a.pk for a in alerts if (a.site_id, a.model_version_id) == (site_id, version_id)],
            }
        )
    return {
        "laboratory": {"id": laboratory.pk, "name": laboratory.name},
        "window_cases": windows.window_size(),
        "min_cases": settings.MONITORING_MIN_CASES,
        "drift_alert_level": settings.MONITORING_DRIFT_ALERT,
        "rows": rows,
        "alerts": [alert_dict(alert) for alert in alerts],
    }

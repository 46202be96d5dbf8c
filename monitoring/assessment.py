"""Reading a site's counts against its model version: agreement with a confidence interval, drift,
and whether either crossed its alert level. Pure functions over the counts of monitoring.windows.

- Agreement is over the cases that can be compared (an AI subtype and a pathologist's subtype).
- Below the validated level: the upper end of the recent agreement's 95 % Wilson interval is below
  the accuracy the version was validated at, so chance alone does not explain the drop (with 50
  cases and 94 % true agreement a false alarm comes about 3 times in 100 windows).
- Drift: the share of the recent images whose OOD score is above the version's calibrated
  threshold. On the images it was validated on that share is small (its calibrated false-flag
  rate); a site far above it sends images unlike the training ones.
"""

from django.conf import settings

from monitoring.stats import proportion, wilson_interval
from monitoring.versions import ood_threshold, validated_accuracy


def agreement(counts):
    compared, agreed = counts.get("compared") or 0, counts.get("agreed") or 0
    low, high = wilson_interval(agreed, compared)
    return {
        "compared": compared,
        "agreed": agreed,
        "rate": proportion(agreed, compared),
        "ci_low": low,
        "ci_high": high,
    }


def drift(counts, version):
    threshold = ood_threshold(version)
    images = counts.get("drift_images") or 0
    if threshold is None:
        return {"available": False, "reason": "The model version has no calibrated OOD threshold.", "score": None}
    if not images:
        return {"available": False, "reason": "No recent image has an OOD score.", "score": None}
    outside = counts.get("outside_images") or 0
    score = outside / images
    return {
        "available": True,
        "reason": "",
        "score": score,
        "images": images,
        "outside_images": outside,
        "cases": counts.get("drift_cases") or 0,
        "threshold": threshold,
        "alert_level": settings.MONITORING_DRIFT_ALERT,
        "above_alert_level": score > settings.MONITORING_DRIFT_ALERT,
    }


def agreement_alert(counts, version):
    """(crossed, measured, limit), or None when it cannot be judged (too few cases, no validated level)."""
    validated, _ = validated_accuracy(version)
    measured = agreement(counts)
    if validated is None or measured["compared"] < max(1, settings.MONITORING_MIN_CASES):
        return None
    return measured["ci_high"] < validated, measured["rate"], validated


def drift_alert(counts, version):
    """(crossed, score, limit), or None when drift is not available or rests on too few cases."""
    measured = drift(counts, version)
    if not measured["available"] or measured["cases"] < max(1, settings.MONITORING_MIN_CASES):
        return None
    return measured["above_alert_level"], measured["score"], settings.MONITORING_DRIFT_ALERT

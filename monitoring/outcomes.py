"""Recording what the AI suggested and what the pathologist signed, one row per case."""

from django.db.models import Avg, Count, Max, Q

from cases.models import Case, Diagnosis
from inference.models import AnalysisJob, Prediction
from inference.status import case_ai_suggestion
from monitoring.models import CaseOutcome
from monitoring.versions import ood_threshold, versions_with_metrics

# The pathologist found no subtype to compare with: the sample, not the AI, is the question.
NOT_COMPARABLE_DIAGNOSES = {Diagnosis.NON_DIAGNOSTIC}


def _shown_version_id(case):
    # The version of the AI result shown with the case: the most recently requested one
    # (inference.status.case_ai_suggestion reads the same).
    return (
        AnalysisJob.objects.filter(smear__case=case)
        .order_by("-created_at", "-pk")
        .values_list("model_version_id", flat=True)
        .first()
    )


def _agreed(ai_label, diagnosis, class_names):
    if diagnosis in NOT_COMPARABLE_DIAGNOSES or not ai_label or ai_label not in (class_names or ()):
        return None
    return ai_label == diagnosis


def record_case_outcome(case):
    """Write (or rewrite, after an amendment) the case's outcome from its current diagnosis.

    Call it inside the transaction that signs or amends; returns the CaseOutcome, or None for a
    case without a signed diagnosis.
    """
    case = Case.objects.get(pk=case.pk)
    review = case.current_diagnosis
    if review is None or case.signed_at is None:
        return None
    version_id = _shown_version_id(case)
    version = versions_with_metrics([version_id]).get(version_id) if version_id else None
    ai_label = case_ai_suggestion(case) if version is not None else ""
    threshold = ood_threshold(version)
    stats = {"images": 0, "ood_images": 0, "outside": None, "flagged": 0, "ood_mean": None, "ood_max": None}
    if version is not None:
        counts = {
            "images": Count("pk"),
            "ood_images": Count("pk", filter=Q(ood_score__isnull=False)),
            "flagged": Count("pk", filter=~Q(flags=[]) | Q(is_smear=False)),
            "ood_mean": Avg("ood_score"),
            "ood_max": Max("ood_score"),
        }
        if threshold is not None:
            counts["outside"] = Count("pk", filter=Q(ood_score__gt=threshold))
        stats.update(Prediction.objects.filter(smear__case=case, model_version=version).aggregate(**counts))
    outcome, _ = CaseOutcome.objects.update_or_create(
        case=case,
        defaults={
            "site_id": case.site_id,
            "laboratory_id": case.laboratory_id,
            "model_version": version,
            "ai_label": ai_label or "",
            "diagnosis": review.diagnosis,
            "agreed": _agreed(ai_label, review.diagnosis, version.class_names if version else ()),
            "flagged": bool(stats["flagged"]),
            "images": stats["images"],
            "ood_images": stats["ood_images"],
            "outside_images": stats["outside"],
            "ood_mean": stats["ood_mean"],
            "ood_max": stats["ood_max"],
            "signed_at": case.signed_at,
        },
    )
    return outcome


def backfill(*, batch_size=200):
    """Outcomes of every signed or amended case (existing ones rewritten). Returns how many."""
    done = 0
    ids = Case.objects.filter(status__in=Case.FINAL_STATUSES).order_by("pk").values_list("pk", flat=True)
    for pk in ids.iterator(chunk_size=batch_size):
        if record_case_outcome(Case(pk=pk)) is not None:
            done += 1
    return done

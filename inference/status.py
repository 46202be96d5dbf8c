"""The AI analysis of a case as people read it: one dict for the API and the panel template.

Nothing here checks access: callers pass a case the user may see (cases.access.get_case_for).
"""

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from cases.models import Diagnosis
from core import permissions
from inference import services
from inference.aggregation import NO_CONSENSUS, NO_CONSENSUS_TEXT, aggregate
from inference.models import AnalysisJob, Prediction
from training.models import ModelVersion

POLL_INTERVAL_MS = 3000

STATE_MESSAGES = {
    "waiting_for_model": (
        "Waiting for a model: no AI model is active yet. The images will be analysed automatically once "
        "one is activated. A pathologist can sign the case without the AI result."
    ),
    "not_started": "Analysis requested: it will start within a few minutes.",
    "queued": "Queued: waiting for a free analysis worker.",
    "running": "Analysing the images…",
    "done": "Analysis complete. The AI result is advisory; the pathologist's signature is the diagnosis.",
    "not_analysed": "No AI analysis was made for this case.",
    "failed": "The analysis failed for every image. A pathologist or lab admin can retry it.",
}


STATE_LABELS = {
    "waiting_for_model": "waiting for a model",
    "not_started": "requested",
    "queued": "queued",
    "running": "analysing",
    "done": "done",
    "failed": "failed",
    "not_analysed": "not analysed",
}


def label_display(label):
    if not label:
        return ""
    if label == "not_a_smear":  # training.gates.NOT_A_SMEAR
        return "Not a blood smear"
    if label == NO_CONSENSUS:
        return NO_CONSENSUS_TEXT
    try:
        return Diagnosis(label).label
    except ValueError:
        return str(label)


def _url(name, *args):
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def duration_text(seconds):
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def job_status_text(job, now):
    """ "queued (waiting 2 min)", "running", "done", "failed: <reason>"."""
    if job.status == AnalysisJob.Status.QUEUED:
        text = f"queued (waiting {duration_text((now - job.enqueued_at).total_seconds())})"
        if job.last_enqueue_error:
            text += " — the job queue is unreachable; it will be sent again automatically"
        return text
    if job.status == AnalysisJob.Status.RUNNING:
        text = "running"
        if job.attempts > 1:
            text += f" (attempt {job.attempts})"
        return text
    if job.status == AnalysisJob.Status.FAILED:
        return f"failed: {job.reason or 'no reason recorded'}"
    return "done"


def job_status_detail(job, status_text):
    """What the status text adds after the status word ("queued" + " (waiting 2 min)"), so a badge
    with the status and this detail read as the status text once, not "done done"."""
    if status_text.startswith(job.status):
        return status_text[len(job.status) :]
    return f" {status_text}"


def _probability_rows(probabilities, class_names=()):
    """Rows in the model's class order (the database does not keep a JSON object's key order)."""
    order = [name for name in class_names if name in probabilities]
    order += [name for name in probabilities if name not in order]
    return [
        {
            "name": name,
            "label": label_display(name),
            "value": probabilities[name],
            "percent": round(probabilities[name] * 100, 1),
        }
        for name in order
    ]


def _version_dict(version):
    return {"id": version.pk, "name": version.name, "is_active": version.is_active} if version else None


def _case_result(predictions, class_names, *, failed, names=None):
    names = names or {}
    return aggregate(
        [
            {
                "smear": p.smear_id,
                "label": p.label,
                "probabilities": p.probabilities,
                "is_smear": p.is_smear,
                "smear_reasons": p.smear_reasons,
                "flags": p.flags,
                "name": names.get(p.smear_id),
            }
            for p in predictions
        ],
        threshold=settings.ATTENTION_THRESHOLD,
        class_names=class_names or None,
        failed=failed,
        display=label_display,
    )


def case_ai_suggestion(case):
    """The AI's case-level label for the most recently requested model version, or "" (none yet).

    The same result as ``case_analysis_data(case)["result"]["label"]``, without building the page.
    """
    latest = (
        AnalysisJob.objects.filter(smear__case=case)
        .order_by("-created_at", "-pk")
        .values_list("model_version_id", flat=True)
        .first()
    )
    if latest is None:
        return ""
    predictions = list(Prediction.objects.filter(smear__case=case, model_version_id=latest))
    if not predictions:
        return ""
    class_names = ModelVersion.objects.filter(pk=latest).values_list("class_names", flat=True).first()
    failed = AnalysisJob.objects.filter(
        smear__case=case, model_version_id=latest, status=AnalysisJob.Status.FAILED
    ).count()
    result = _case_result(predictions, class_names, failed=failed)
    if not result.consensus:
        return NO_CONSENSUS
    return result.label or ""


def ai_summaries(case_ids):
    """{case id: the AI's case-level summary} for a page of a list, in two queries whatever its size.

    Per case, for its most recently requested model version: ``label`` / ``label_display`` (the
    suggestion, "" when there is none yet), ``top_probability``, ``flags`` (short texts: the
    predictions' flags, not-a-smear images, failed analyses, the case result's own reasons),
    ``pending`` (work left), ``failed`` (images whose analysis failed).
    """
    case_ids = list(case_ids)
    if not case_ids:
        return {}
    jobs = (
        AnalysisJob.objects.filter(smear__case_id__in=case_ids)
        .order_by("smear__case_id", "-created_at", "-pk")
        .values_list("smear__case_id", "model_version_id", "model_version__class_names", "status")
    )
    latest, class_names, statuses = {}, {}, {}
    for case_id, version_id, names, status in jobs:
        latest.setdefault(case_id, version_id)  # newest request first
        if latest[case_id] == version_id:
            class_names[case_id] = names or []
            statuses.setdefault(case_id, []).append(status)
    rows = Prediction.objects.filter(smear__case_id__in=list(latest), model_version_id__in=set(latest.values()))
    predictions = {}
    for p in rows.values(
        "smear__case_id", "smear_id", "model_version_id", "label", "probabilities", "is_smear", "smear_reasons", "flags"
    ):
        if latest.get(p["smear__case_id"]) == p["model_version_id"]:
            predictions.setdefault(p["smear__case_id"], []).append(p)
    summaries = {}
    for case_id in case_ids:
        found = predictions.get(case_id, [])
        failed = statuses.get(case_id, []).count(AnalysisJob.Status.FAILED)
        pending = any(s in AnalysisJob.PENDING_STATUSES for s in statuses.get(case_id, []))
        flags = []
        for p in found:
            flags += [text for text in p["flags"] or [] if text not in flags]
        not_smear = sum(1 for p in found if p["is_smear"] is False)
        if not_smear:
            flags.append(f"{not_smear} not a blood smear")
        if failed:
            flags.append(f"{failed} analysis failed" if failed == 1 else f"{failed} analyses failed")
        result = None
        if found:
            result = aggregate(
                [
                    {
                        "smear": p["smear_id"],
                        "label": p["label"],
                        "probabilities": p["probabilities"],
                        "is_smear": p["is_smear"],
                        "smear_reasons": p["smear_reasons"],
                    }
                    for p in found
                ],
                threshold=settings.ATTENTION_THRESHOLD,
                class_names=class_names.get(case_id) or None,
                failed=failed,
                display=label_display,
            )
            if (
                result.label
                and result.top_probability is not None
                and result.top_probability < settings.ATTENTION_THRESHOLD
            ):
                flags.append("low confidence")
            if len({image["label"] for image in result.per_image if image.get("probabilities")}) > 1:
                flags.append("images disagree")
        label = result.label if result else None
        summaries[case_id] = {
            "label": label or "",
            "label_display": label_display(label) if label else "",
            "top_probability": result.top_probability if result else None,
            "flags": flags,
            "pending": pending,
            "failed": failed,
            "analysed": bool(found),
        }
    return summaries


def case_analysis_data(case, user=None, *, version_id=None, now=None):
    """Everything about the AI analysis of ``case`` (one model version at a time), JSON-ready.

    The version shown is ``version_id`` if the case has jobs for it, else the most recently requested.
    """
    now = now or timezone.now()
    smears = list(case.smears.order_by("pk"))
    jobs = list(AnalysisJob.objects.with_version().filter(smear__case=case).order_by("-created_at", "-pk"))
    versions = []
    for job in jobs:  # newest request first
        if job.model_version not in versions:
            versions.append(job.model_version)
    selected = next((v for v in versions if str(v.pk) == str(version_id)), None) if version_id else None
    selected = selected or (versions[0] if versions else None)
    active = ModelVersion.active()

    jobs_by_smear = {job.smear_id: job for job in jobs if selected and job.model_version_id == selected.pk}
    predictions = (
        {p.smear_id: p for p in Prediction.objects.filter(smear__case=case, model_version=selected)} if selected else {}
    )
    may_retry = bool(user is not None and permissions.retries_analysis(user, case))
    may_rerun = bool(user is not None and permissions.is_case_pathologist(user, case))
    sees_timings = bool(user is not None and permissions.watches_analyses(user))

    class_names = list(selected.class_names or []) if selected else []
    smear_rows = []
    for smear in smears:
        job = jobs_by_smear.get(smear.pk)
        prediction = predictions.get(smear.pk)
        row = {
            "id": smear.pk,
            "filename": smear.original_filename or f"Image {smear.pk}",
            "image_url": _url("smear-image", smear.pk),
            "width": smear.width,
            "height": smear.height,
            "job": None,
            "prediction": None,
        }
        if job is not None:
            status_text = job_status_text(job, now)
            row["job"] = {
                "id": job.pk,
                "status": job.status,
                "status_text": status_text,
                "status_detail": job_status_detail(job, status_text),
                "attempts": job.attempts,
                "reason": job.reason,
                "enqueued_at": job.enqueued_at.isoformat(),
                "started_at": job.started_at.isoformat() if job.started_at else None,
                "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                "waiting_s": int((now - job.enqueued_at).total_seconds())
                if job.status == AnalysisJob.Status.QUEUED
                else None,
                "last_enqueue_error": job.last_enqueue_error,
                "retry_url": _url("inference-job-retry", job.pk)
                if may_retry and job.status == AnalysisJob.Status.FAILED
                else None,
            }
        if prediction is not None:
            top = prediction.top_probability
            row["prediction"] = {
                "id": prediction.pk,
                "label": prediction.label,
                "label_display": label_display(prediction.label),
                "top_probability": top,
                "probabilities": _probability_rows(prediction.probabilities, class_names),
                "heatmap_url": _url("inference-heatmap", prediction.pk) if prediction.heatmap else None,
                "heatmap_method": prediction.heatmap_method,
                # Operational timings are for the laboratory, not for the referring clinician.
                "queue_wait_ms": prediction.queue_wait_ms if sees_timings else None,
                "inference_ms": prediction.inference_ms if sees_timings else None,
                "runtime": prediction.runtime,
                "is_smear": prediction.is_smear,
                "smear_reasons": list(prediction.smear_reasons or []),
                "ood_score": prediction.ood_score,
                "flags": list(prediction.flags or []),
                "created_at": prediction.created_at.isoformat(),
            }
        smear_rows.append(row)

    statuses = [job.status for job in jobs_by_smear.values()]
    if not selected:
        if case.status not in services.ANALYSABLE_CASE_STATUSES:
            state = "not_analysed"
        elif active is None and case.requested_model_version is None:
            state = "waiting_for_model"
        else:
            state = "not_started"
    elif AnalysisJob.Status.RUNNING in statuses:
        state = "running"
    elif AnalysisJob.Status.QUEUED in statuses:
        state = "queued"
    elif statuses and all(s == AnalysisJob.Status.FAILED for s in statuses):
        state = "failed"
    else:
        state = "done"
    pending_anywhere = any(job.is_pending for job in jobs)

    result = None
    names = {s.pk: s.original_filename or f"Image {s.pk}" for s in smears}
    if predictions:
        case_result = _case_result(
            predictions.values(),
            class_names,
            failed=statuses.count(AnalysisJob.Status.FAILED),
            names=names,
        ).as_dict()
        case_result["label_display"] = (
            NO_CONSENSUS_TEXT
            if not case_result["consensus"]
            else label_display(case_result["label"])
            or ("No subtype: no image is a blood smear" if case_result["not_smear"] else "")
        )
        case_result["probability_rows"] = _probability_rows(case_result["probabilities"], class_names)
        case_result["partial"] = state in ("queued", "running")
        result = case_result

    rerun = None
    if may_rerun:
        rerun = {
            "url": _url("inference-case-rerun", case.pk),
            "versions": [
                {"id": v.pk, "name": v.name, "is_active": v.is_active, "already_run": v in versions}
                for v in services.rerun_choices()
            ],
        }

    return {
        "case": {
            "id": case.pk,
            "reference": case.reference,
            "status": case.status,
            "status_display": case.get_status_display(),
            "is_final": case.is_final,
        },
        "state": state,
        "state_label": STATE_LABELS[state],
        "message": STATE_MESSAGES[state],
        "pending": pending_anywhere or state == "not_started",
        "poll_interval_ms": POLL_INTERVAL_MS if (pending_anywhere or state == "not_started") else None,
        "model_version": _version_dict(selected),
        "active_model_version": _version_dict(active),
        "versions": [_version_dict(v) for v in versions],
        "smears": smear_rows,
        "result": result,
        "attention_threshold": settings.ATTENTION_THRESHOLD,
        "permissions": {"can_retry": may_retry, "can_rerun": may_rerun, "sees_timings": sees_timings},
        "rerun": rerun,
        "urls": {"panel": _url("inference-case-analysis-panel", case.pk)},
        "advisory": "The AI only advises: the diagnosis is the pathologist's.",
    }


__all__ = [
    "ai_summaries",
    "job_status_detail",
    "case_ai_suggestion",
    "case_analysis_data",
    "job_status_text",
    "duration_text",
    "label_display",
]

"""Portal views of the AI analysis (session auth). Same access rules as the case pages:

1. anonymous → login page (the JSON endpoint answers 401 JSON instead: it is polled by script);
2. a role that never sees cases → 403 whatever the id;
3. a case, smear or prediction the user may not see → 404 (cases.access selectors);
4. visible, but an action the role may not do (a clinician retrying) → 403.
Lab admins see no case, but may retry failed jobs of their laboratory from their own list.
"""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import select_template
from django.utils.cache import add_never_cache_headers, patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from cases import access
from cases.errors import DomainError, NotAllowed
from cases.listing import keyset_page
from cases.models import Case
from inference import services
from inference.models import AnalysisJob, Prediction
from inference.status import case_analysis_data
from training.models import ModelVersion


FAILED_PAGE_SIZE = 50


def _error(status, code, message):
    return JsonResponse({"error": {"code": code, "message": message, "details": {}}}, status=status)


def _sees_cases(user):
    return user.is_clinician or user.is_pathologist


def _wants_json(request):
    return "application/json" in request.headers.get("Accept", "") or request.path.endswith(".json")


@require_GET
def case_analysis_json(request, pk):
    user = request.user
    if not user.is_authenticated:
        return _error(401, "not_authenticated", "Sign in to see this analysis.")
    if not _sees_cases(user):
        return _error(403, "permission_denied", "Your role does not give access to cases.")
    try:
        case = access.get_case_for(user, pk)
    except Http404:
        return _error(404, "not_found", "Not found.")
    response = JsonResponse(case_analysis_data(case, user, version_id=request.GET.get("version")))
    add_never_cache_headers(response)
    return response


@login_required
@require_GET
def case_analysis_page(request, pk):
    if not _sees_cases(request.user):
        raise PermissionDenied("Your role does not give access to cases.")
    case = access.get_case_for(request.user, pk)
    base = select_template(["base.html", "inference/standalone_base.html"])
    return render(request, "inference/case_analysis_page.html", {
        "case": case, "base_template": base.template.name,
        "analysis": case_analysis_data(case, request.user, version_id=request.GET.get("version")),
    })


@login_required
@require_GET
def heatmap(request, pk):
    if not _sees_cases(request.user):
        raise PermissionDenied("Your role does not give access to cases.")
    try:
        prediction = Prediction.objects.get(pk=pk, smear__case__in=access.cases_visible_to(request.user))
    except (Prediction.DoesNotExist, ValueError, TypeError):
        raise Http404("No such heatmap.") from None
    if not prediction.heatmap:
        raise Http404("This prediction has no heatmap.")
    try:
        handle = prediction.heatmap.storage.open(prediction.heatmap.name, "rb")
    except (FileNotFoundError, OSError):
        raise Http404("The heatmap file is missing from storage.") from None
    response = FileResponse(handle, content_type="image/png")
    response["Content-Disposition"] = f'inline; filename="heatmap-{prediction.pk}.png"'
    response["X-Content-Type-Options"] = "nosniff"
    patch_cache_control(response, private=True, max_age=3600)
    patch_vary_headers(response, ["Cookie"])
    return response


def _job_for_retry(user, pk):
    """A job on a case the user sees, or (lab admins) on a case referred to their laboratory."""
    cases = access.cases_visible_to(user)
    if user.is_lab_admin:
        cases = Case.objects.filter(laboratory_id=user.organisation_id)
    try:
        return AnalysisJob.objects.with_version().select_related("smear__case").get(pk=pk, smear__case__in=cases)
    except (AnalysisJob.DoesNotExist, ValueError, TypeError):
        raise Http404("No such analysis.") from None


def _after_action(request, case, ok_message):
    if _wants_json(request):
        data = case_analysis_data(case, request.user) if access.cases_visible_to(request.user).filter(pk=case.pk).exists() else {}
        return JsonResponse({"ok": True, "message": ok_message, "analysis": data}, status=202)
    messages.success(request, ok_message)
    if request.user.is_lab_admin:
        return redirect("inference-failed-jobs")
    return redirect(case.get_absolute_url())


def _refused(request, error, case):
    if _wants_json(request):
        return _error(error.http_status, error.code, error.message)
    if isinstance(error, NotAllowed):
        raise PermissionDenied(error.message)
    messages.error(request, error.message)
    if request.user.is_lab_admin:
        return redirect("inference-failed-jobs")
    return redirect(case.get_absolute_url())


@login_required
@require_POST
def job_retry(request, pk):
    if not (_sees_cases(request.user) or request.user.is_lab_admin):
        raise PermissionDenied("Your role does not give access to cases.")
    job = _job_for_retry(request.user, pk)
    case = job.smear.case
    try:
        services.job_retry(user=request.user, job=job, request=request)
    except DomainError as error:
        return _refused(request, error, case)
    return _after_action(request, case, f"The analysis of image {job.smear_id} was queued again.")


@login_required
@require_POST
def case_rerun(request, pk):
    if not _sees_cases(request.user):
        raise PermissionDenied("Your role does not give access to cases.")
    case = access.get_case_for(request.user, pk)
    version = None
    raw = request.POST.get("model_version", "")
    if raw:
        version = ModelVersion.objects.without_record().filter(pk=raw).first() if raw.isdigit() else None
        if version is None:
            return _refused(request, DomainError("Unknown model version."), case)
    try:
        jobs = services.case_rerun(user=request.user, case=case, model_version=version, request=request)
    except DomainError as error:
        return _refused(request, error, case)
    return _after_action(
        request, case, f"Analysis with model {version.name} requested for {len(jobs)} image{'s' if len(jobs) != 1 else ''}."
    )


@login_required
@require_GET
def failed_jobs(request):
    """Failed analyses of the user's laboratory (lab admins and pathologists), with a retry button."""
    user = request.user
    if not (user.is_lab_admin or user.is_pathologist):
        raise PermissionDenied("Only the reading laboratory's staff see failed analyses.")
    jobs = (
        AnalysisJob.objects.filter(status=AnalysisJob.Status.FAILED, smear__case__laboratory_id=user.organisation_id)
        .with_version().select_related("smear__case")
        .order_by("-finished_at", "-pk")
    )
    # Newest / older pages (no count: counting means joining every failed job to its case).
    page = keyset_page(request, jobs, FAILED_PAGE_SIZE, field="finished_at")
    base = select_template(["base.html", "inference/standalone_base.html"])
    return render(
        request, "inference/failed_jobs.html", {"jobs": page, "page_obj": page, "base_template": base.template.name}
    )

"""Portal views of the AI analysis (session auth). Same access rules as the case pages:

1. anonymous → login page (the panel that htmx polls answers "signed out" and stops the polling);
2. a role that never sees cases → 403 whatever the id;
3. a case, smear or prediction the user may not see → 404 (cases.access selectors);
4. visible, but an action the role may not do (a clinician retrying) → 403.
Lab admins see no case, but may retry failed jobs of their laboratory from their own list.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers, patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from cases import access
from cases.listing import keyset_page
from core import permissions
from core.errors import DomainError, NotAllowed
from core.permissions import require_role
from inference import selectors, services
from inference.models import AnalysisJob, Prediction
from inference.status import case_analysis_data
from training.models import ModelVersion

CASES_ONLY = "Your role does not give access to cases."
FAILED_PAGE_SIZE = 50


# htmx stops polling an element whose response has this status (and still swaps it in).
STOP_POLLING = 286


def _is_htmx(request):
    return request.headers.get("HX-Request") == "true"


def _panel(request, case, *, version_id=None, notice=None, status=200):
    """The analysis panel alone: what htmx swaps in when it polls or after an action."""
    response = render(
        request,
        "inference/case_analysis.html",
        {
            "case": case,
            "analysis": case_analysis_data(case, request.user, version_id=version_id),
            "notice": notice,
        },
        status=status,
    )
    add_never_cache_headers(response)
    return response


@login_required
@require_GET
def case_analysis_page(request, pk):
    require_role(permissions.works_with_cases(request.user), CASES_ONLY)
    case = access.get_case_for(request.user, pk)
    return render(
        request,
        "inference/case_analysis_page.html",
        {
            "case": case,
            "analysis": case_analysis_data(case, request.user, version_id=request.GET.get("version")),
        },
    )


@require_GET
def case_analysis_panel(request, pk):
    """The panel polled by htmx. No login redirect: a signed-out poll would swap the login page in."""
    if not request.user.is_authenticated:
        response = render(request, "inference/panel_signed_out.html", status=STOP_POLLING)
        add_never_cache_headers(response)
        return response
    require_role(permissions.works_with_cases(request.user), CASES_ONLY)
    case = access.get_case_for(request.user, pk)
    return _panel(request, case, version_id=request.GET.get("version"))


@login_required
@require_GET
def heatmap(request, pk):
    require_role(permissions.works_with_cases(request.user), CASES_ONLY)
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


def _after_action(request, case, ok_message):
    if _is_htmx(request):
        return _panel(request, case, notice={"level": "success", "text": ok_message}, status=202)
    messages.success(request, ok_message)
    if request.user.is_lab_admin:
        return redirect("inference-failed-jobs")
    return redirect(case.get_absolute_url())


def _refused(request, error, case):
    if isinstance(error, NotAllowed):
        raise error
    if _is_htmx(request):
        return _panel(request, case, notice={"level": "danger", "text": error.message})
    messages.error(request, error.message)
    if request.user.is_lab_admin:
        return redirect("inference-failed-jobs")
    return redirect(case.get_absolute_url())


@login_required
@require_POST
def job_retry(request, pk):
    require_role(permissions.reads_case(request.user), CASES_ONLY)
    job = selectors.get_job_for_retry(request.user, pk)
    case = job.smear.case
    try:
        services.job_retry(user=request.user, job=job, request=request)
    except DomainError as error:
        return _refused(request, error, case)
    return _after_action(request, case, f"The analysis of image {job.smear_id} was queued again.")


@login_required
@require_POST
def case_rerun(request, pk):
    require_role(permissions.works_with_cases(request.user), CASES_ONLY)
    case = access.get_case_for(request.user, pk)
    version = None
    raw = request.POST.get("model_version", "")
    if raw:
        version = ModelVersion.objects.filter(pk=raw).first() if raw.isdigit() else None
        if version is None:
            return _refused(request, DomainError("Unknown model version."), case)
    try:
        jobs = services.case_rerun(user=request.user, case=case, model_version=version, request=request)
    except DomainError as error:
        return _refused(request, error, case)
    return _after_action(
        request,
        case,
        f"Analysis with model {version.name} requested for {len(jobs)} image{'s' if len(jobs) != 1 else ''}.",
    )


@login_required
@require_GET
def failed_jobs(request):
    """Failed analyses of the user's laboratory (lab admins and pathologists), with a retry button."""
    user = request.user
    require_role(permissions.watches_analyses(user), "Only the reading laboratory's staff see failed analyses.")
    jobs = (
        AnalysisJob.objects.filter(status=AnalysisJob.Status.FAILED, smear__case__laboratory_id=user.organisation_id)
        .with_version()
        .select_related("smear__case")
        .order_by("-finished_at", "-pk")
    )
    # Newest / older pages (no count: counting means joining every failed job to its case).
    page = keyset_page(request, jobs, FAILED_PAGE_SIZE, field="finished_at")
    return render(request, "inference/failed_jobs.html", {"jobs": page, "page_obj": page})

"""Portal views: thin. Reads go through cases.access, writes through cases.services.

Access rules, in this order:
1. anonymous → login page (login_required);
2. a role that never uses the page → 403, whatever the id (nothing leaks);
3. an object the user may not see → 404 (the selectors simply don't return it);
4. a visible object but an action the role may not do (a clinician signing) → 403.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods

from audit.selectors import audit_events_visible_to
from audit.services import audit_page_view
from cases import access, services
from cases.audit_trail import AuditFilterForm, csv_lines, filter_events
from cases.forms import (
    AmendForm,
    CaseFilterForm,
    CaseForm,
    PatientForm,
    PatientSearchForm,
    SignForm,
)
from cases.listing import case_page, keyset_page, paginate, with_case_counts
from cases.media import smear_image_response
from cases.models import Diagnosis
from cases.submit_once import case_submit_once
from core import permissions
from core.errors import AlreadySigned, DomainError, InvalidTransition, NotAllowed, UploadRejected
from core.forms import apply_domain_error
from core.permissions import require_role
from security.signature import verify_signature

PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 50


# --- Home -------------------------------------------------------------------------------------


@login_required
def home(request):
    user = request.user
    if user.is_superuser:
        return redirect("admin:index")
    if user.is_clinician:
        return redirect("case-list")
    if user.is_pathologist:
        return redirect("review-queue")
    if user.is_lab_admin:
        return redirect("user-list")
    raise PermissionDenied("Your account has no role yet. Ask your organisation's administrator.")


# --- Patients ---------------------------------------------------------------------------------


@login_required
def patient_list(request):
    require_role(permissions.works_with_patients(request.user))
    search = PatientSearchForm(request.GET or None)
    patients = access.patients_visible_to(request.user).order_by("family_name", "given_name", "mrn", "pk")
    query = ""
    if search.is_valid():
        query = search.cleaned_data["q"].strip()
    patients = access.search_patients(patients, query)
    page = paginate(request, patients, PAGE_SIZE)
    page.object_list = with_case_counts(page.object_list)
    return render(request, "cases/patient_list.html", {"page_obj": page, "search": search, "query": query})


@login_required
@require_http_methods(["GET", "POST"])
def patient_create(request):
    require_role(permissions.works_with_patients(request.user))
    form = PatientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            patient = services.patient_register(user=request.user, request=request, **form.cleaned_data)
        except NotAllowed as error:
            raise PermissionDenied(error.message) from None
        except DomainError as error:
            apply_domain_error(form, error)
        else:
            messages.success(request, f"Patient {patient.full_name} ({patient.mrn}) registered.")
            return redirect("patient-detail", pk=patient.pk)
    return render(request, "cases/patient_form.html", {"form": form})


@login_required
def patient_detail(request, pk):
    require_role(permissions.works_with_patients(request.user))
    patient = access.get_patient_for(request.user, pk)
    cases = (
        access.cases_visible_to(request.user)
        .filter(patient=patient)
        .select_related("laboratory", "submitted_by")
        .order_by("-created_at", "-pk")
    )
    audit_page_view(request, patient=patient, page="patient")
    return render(
        request, "cases/patient_detail.html", {"patient": patient, "page_obj": case_page(request, cases, PAGE_SIZE)}
    )


# --- Cases ------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def case_create(request):
    require_role(permissions.works_with_patients(request.user))
    initial = {}
    patient_id = request.GET.get("patient")
    if patient_id:
        initial["patient"] = access.get_patient_for(request.user, patient_id)
    if request.method == "POST":
        form = CaseForm(request.POST, request.FILES, user=request.user)
    else:
        form = CaseForm(user=request.user, initial=initial)
    rejected_files = {}
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            case, replayed = case_submit_once(
                token=data.get("submission_token"),
                user=request.user,
                patient=data["patient"],
                files=data["images"],
                clinical_notes=data["clinical_notes"],
                priority=data["priority"],
                laboratory=data.get("laboratory"),
                model_version=data.get("model_version"),
                request=request,
            )
        except NotAllowed as error:
            raise PermissionDenied(error.message) from None
        except UploadRejected as error:
            # details maps each bad file's name to a reason that follows the name ("is damaged").
            rejected_files = {
                name: _reason_text(reason) for name, reason in (error.details or {}).items() if name != "files"
            }
            for name, reason in rejected_files.items():
                form.add_error("images", f"{name} {reason}")
            form.add_error(None, f"No case was created. {error.message}")
        except DomainError as error:
            apply_domain_error(form, error)
        else:
            if replayed:  # a double click or a resent form: the case exists already
                messages.info(request, f"Case {case.reference} was already submitted; nothing was sent twice.")
                return redirect(case)
            count = case.smears.count()
            messages.success(
                request,
                f"Case {case.reference} submitted to {case.laboratory} with {count} image{'s' if count != 1 else ''}.",
            )
            return redirect(case)
    return render(
        request,
        "cases/case_form.html",
        {"form": form, "rejected_files": rejected_files, "has_patients": form.fields["patient"].queryset.exists()},
    )


def _reason_text(reason):
    if isinstance(reason, (list, tuple)):
        return "; ".join(str(r) for r in reason)
    return str(reason)


@login_required
def case_list(request):
    require_role(permissions.works_with_cases(request.user))
    filters = CaseFilterForm(request.GET or None)
    cases = (
        access.cases_visible_to(request.user)
        .select_related("patient", "site", "laboratory", "signed_by")
        .order_by("-created_at", "-pk")
    )
    if filters.is_valid():
        if filters.cleaned_data["status"]:
            cases = cases.filter(status=filters.cleaned_data["status"])
        if filters.cleaned_data["priority"]:
            cases = cases.filter(priority=filters.cleaned_data["priority"])
        if filters.cleaned_data["q"].strip():
            cases = access.search_cases(cases, filters.cleaned_data["q"])
    return render(
        request, "cases/case_list.html", {"page_obj": case_page(request, cases, PAGE_SIZE), "filters": filters}
    )


def _case_context(case):
    reviews = list(case.diagnoses.select_related("signed_by", "supersedes").order_by("signed_at", "pk"))
    current = reviews[-1] if reviews else None
    return {
        "case": case,
        "smears": list(case.smears.all()),
        "reviews": reviews,
        "current_review": current,
    }


@login_required
def case_detail(request, pk):
    require_role(permissions.works_with_cases(request.user))
    case = access.get_case_for(request.user, pk)
    audit_page_view(request, case=case, page="case-detail")
    return render(request, "cases/case_detail.html", _case_context(case))


@login_required
def smear_image(request, pk):
    require_role(permissions.works_with_cases(request.user))
    return smear_image_response(access.get_smear_for(request.user, pk))


# --- Review -----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def case_review(request, pk):
    require_role(permissions.works_with_cases(request.user))
    case = access.get_case_for(request.user, pk)  # 404 outside the user's site or laboratory
    # Visible, but only the laboratory's pathologists review (a clinician gets 403).
    require_role(
        permissions.is_case_pathologist(request.user, case), "Only pathologists of the reading laboratory review cases."
    )

    sign_form = SignForm(prefix="sign")
    amend_form = AmendForm(prefix="amend")
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "sign":
            sign_form = SignForm(request.POST, prefix="sign")
            if sign_form.is_valid():
                try:
                    method = verify_signature(request, request.user, **sign_form.signature_credentials())
                    services.case_sign(
                        user=request.user,
                        case=case,
                        request=request,
                        signature_method=method,
                        **sign_form.service_data(),
                    )
                except NotAllowed as error:
                    raise PermissionDenied(error.message) from None
                except AlreadySigned as error:
                    messages.error(request, error.message)
                    return redirect("case-review", pk=case.pk)
                except DomainError as error:
                    apply_domain_error(sign_form, error)
                else:
                    # On to the next case of the queue, or back to the queue when none is waiting.
                    following = access.next_in_queue(request.user, exclude=case)
                    if following is None:
                        messages.success(request, f"Case {case.reference} signed. The report is now final.")
                        return redirect("review-queue")
                    messages.success(
                        request,
                        f"Case {case.reference} signed. The report is now final. Next: {following.reference}.",
                    )
                    return redirect("case-review", pk=following.pk)
        elif action == "amend":
            amend_form = AmendForm(request.POST, prefix="amend")
            if amend_form.is_valid():
                try:
                    method = verify_signature(request, request.user, **amend_form.signature_credentials())
                    services.case_amend(
                        user=request.user,
                        case=case,
                        request=request,
                        signature_method=method,
                        **amend_form.service_data(),
                    )
                except NotAllowed as error:
                    raise PermissionDenied(error.message) from None
                except InvalidTransition as error:
                    # Not signed (yet): the amendment form isn't even shown, so say it on top.
                    messages.error(request, error.message)
                    return redirect("case-review", pk=case.pk)
                except DomainError as error:
                    apply_domain_error(amend_form, error)
                else:
                    messages.success(request, f"Case {case.reference} amended. The signed version stays on record.")
                    return redirect("case-review", pk=case.pk)
        else:
            messages.error(request, "Unknown action.")
            return redirect("case-review", pk=case.pk)
        case.refresh_from_db()
    else:
        audit_page_view(request, case=case, page="case-review")

    context = _case_context(case)
    context.update(
        {
            "sign_form": sign_form,
            "amend_form": amend_form,
            "amend_open": amend_form.is_bound,
            "next_case": access.next_in_queue(request.user, exclude=case),
            "shortcut_diagnoses": [
                {"key": str(number), "value": value, "label": label}
                for number, (value, label) in enumerate(Diagnosis.choices, start=1)
            ],
        }
    )
    return render(request, "cases/case_review.html", context)


# htmx stops polling an element whose response has this status (and still swaps it in).
STOP_POLLING = 286


@require_http_methods(["GET"])
def case_status(request, pk):
    """The case header's badges (status, priority, assignee), polled by htmx until the case is final.

    The summary card's status comes along as an out-of-band swap, so both stay in step. Signed out:
    an empty answer that stops the polling (never the login page swapped into a header).
    """
    if not request.user.is_authenticated:
        return HttpResponse(status=STOP_POLLING)
    require_role(permissions.works_with_cases(request.user))
    case = access.get_case_for(request.user, pk)
    response = render(request, "cases/_case_status.html", {"case": case, "oob": True})
    if case.is_final:
        response.status_code = STOP_POLLING
    add_never_cache_headers(response)
    return response


# --- Audit trail ------------------------------------------------------------------------------


@login_required
def audit_log(request):
    require_role(permissions.administers_organisation(request.user))
    filters = AuditFilterForm(request.GET or None)
    events = audit_events_visible_to(request.user).select_related("actor_organisation")
    if filters.is_bound and not filters.is_valid():
        return render(request, "cases/audit_log.html", {"filters": filters, "page_obj": []}, status=400)
    if filters.is_bound:
        events = filter_events(events, filters)
    return render(
        request,
        "cases/audit_log.html",
        {"filters": filters, "page_obj": keyset_page(request, events, AUDIT_PAGE_SIZE)},
    )


@login_required
def audit_log_csv(request):
    """Every event the filters select, as CSV, streamed (see cases.audit_trail)."""
    require_role(permissions.administers_organisation(request.user))
    filters = AuditFilterForm(request.GET)
    if not filters.is_valid():
        raise BadRequest("; ".join(f"{name}: {' '.join(errors)}" for name, errors in filters.errors.items()))
    events = filter_events(audit_events_visible_to(request.user), filters)
    response = StreamingHttpResponse(csv_lines(events), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="telediag-audit-{stamp}.csv"'
    return response

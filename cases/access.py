"""Who may see what: every read in the portal and the API goes through these selectors.

Anything a user may not see is simply absent from their querysets, so views answer 404 (not 403)
and ids of other organisations don't leak.
"""
from django.db.models import Case as Conditional, IntegerField, Value, When
from django.http import Http404

from accounts.models import Organisation
from cases.models import Case, Patient, Smear


def patients_visible_to(user):
    if not user.is_authenticated or not user.is_clinician:
        return Patient.objects.none()
    return Patient.objects.filter(organisation_id=user.organisation_id)


def cases_visible_to(user):
    if not user.is_authenticated:
        return Case.objects.none()
    if user.is_clinician:
        return Case.objects.filter(site_id=user.organisation_id)
    if user.is_pathologist:
        return Case.objects.filter(laboratory_id=user.organisation_id)
    return Case.objects.none()


def review_queue_for(user):
    """Unsigned cases referred to the pathologist's laboratory: urgent first, then oldest first."""
    if not user.is_authenticated or not user.is_pathologist:
        return Case.objects.none()
    urgent_first = Conditional(When(priority=Case.Priority.URGENT, then=Value(0)), default=Value(1), output_field=IntegerField())
    return (
        cases_visible_to(user)
        .exclude(status__in=Case.FINAL_STATUSES)
        .select_related("patient", "site")
        .order_by(urgent_first, "created_at", "pk")
    )


def get_case_for(user, pk):
    try:
        return cases_visible_to(user).select_related("patient", "site", "laboratory", "submitted_by").get(pk=pk)
    except (Case.DoesNotExist, ValueError, TypeError):
        raise Http404("No such case.") from None


def get_smear_for(user, pk):
    try:
        return Smear.objects.select_related("case").get(pk=pk, case__in=cases_visible_to(user))
    except (Smear.DoesNotExist, ValueError, TypeError):
        raise Http404("No such image.") from None


def get_patient_for(user, pk):
    try:
        return patients_visible_to(user).get(pk=pk)
    except (Patient.DoesNotExist, ValueError, TypeError):
        raise Http404("No such patient.") from None


def laboratories_for(user):
    """Reading laboratories a clinician's site refers to."""
    if not user.is_authenticated or not user.is_clinician:
        return Organisation.objects.none()
    # By the site's id: no query for the organisation itself.
    return Organisation.objects.filter(referring_sites=user.organisation_id, is_active=True).order_by("name")

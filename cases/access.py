"""Who may see what: every read in the portal and the API goes through these selectors.

Anything a user may not see is simply absent from their querysets, so views answer 404 (not 403)
and ids of other organisations don't leak.
"""

import re

from django.db.models import Q
from django.http import Http404

from accounts.models import Organisation
from cases.models import Case, Patient, Smear, urgent_first


def patients_visible_to(user):
    if not user.is_authenticated or not user.is_clinician:
        return Patient.objects.none()
    return Patient.objects.filter(organisation_id=user.organisation_id)


def search_patients(patients, query):
    """Patients with every word of ``query`` somewhere in their MRN, given or family name.

    The same conditions as the API's search filter; PostgreSQL answers them from the trigram
    indexes of migration 0006 (words of three characters or more).
    """
    for word in query.split():
        patients = patients.filter(
            Q(mrn__icontains=word) | Q(given_name__icontains=word) | Q(family_name__icontains=word)
        )
    return patients


def cases_visible_to(user):
    if not user.is_authenticated:
        return Case.objects.none()
    if user.is_clinician:
        return Case.objects.filter(site_id=user.organisation_id)
    if user.is_pathologist:
        return Case.objects.filter(laboratory_id=user.organisation_id)
    return Case.objects.none()


CASE_REFERENCE = re.compile(r"^(?:TD-?)?0*(\d{1,18})$", re.IGNORECASE)


def search_cases(cases, query):
    """Cases whose reference (TD-000123, or 123) or patient's medical record number is ``query``.

    Exact matches only, so both are index lookups (the case's primary key; the patient's MRN).
    """
    query = query.strip()
    # The patients first (a handful of ids), so the case lookup is two index scans, not a scan of
    # every visible case testing a subquery.
    patients = list(Patient.objects.filter(mrn__in={query, query.upper()}).values_list("pk", flat=True))
    condition = Q(patient_id__in=patients)
    match = CASE_REFERENCE.match(query)
    if match:
        condition |= Q(pk=int(match.group(1)))
    return cases.filter(condition)


def review_queue_for(user):
    """Unsigned cases referred to the pathologist's laboratory: urgent first, then oldest first."""
    if not user.is_authenticated or not user.is_pathologist:
        return Case.objects.none()
    return (
        cases_visible_to(user)
        .exclude(status__in=Case.FINAL_STATUSES)
        .select_related("patient", "site")
        .order_by(urgent_first(), "created_at", "pk")  # read off the case_review_queue index
    )


def next_in_queue(user, *, exclude=None):
    """The case a pathologist reads next: the head of their queue (urgent first, oldest first),
    leaving out ``exclude`` and cases another pathologist has taken. None when nothing is waiting."""
    queue = review_queue_for(user).exclude(~Q(assigned_to=None) & ~Q(assigned_to_id=user.pk))
    if exclude is not None:
        queue = queue.exclude(pk=exclude.pk)
    return queue.first()


def get_case_for(user, pk):
    try:
        return (
            cases_visible_to(user)
            .select_related("patient", "site", "laboratory", "submitted_by", "assigned_to")
            .get(pk=pk)
        )
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

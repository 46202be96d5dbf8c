"""Reads of the analysis jobs, with the same visibility rules in the portal and the API."""

from django.http import Http404

from cases import access
from cases.models import Case
from core import permissions
from inference.models import AnalysisJob


def laboratory_jobs(user):
    """Analysis jobs of the cases referred to the user's laboratory (pathologists and lab admins)."""
    if not permissions.watches_analyses(user):
        return AnalysisJob.objects.none()
    return (
        AnalysisJob.objects.with_version()
        .select_related("smear__case")
        .filter(smear__case__laboratory_id=user.organisation_id)
    )


def get_job_for_retry(user, pk):
    """A job on a case the user sees, or (lab admins, who see no case) on one referred to their laboratory."""
    cases = access.cases_visible_to(user)
    if permissions.administers_organisation(user):
        cases = Case.objects.filter(laboratory_id=user.organisation_id)
    try:
        return AnalysisJob.objects.with_version().select_related("smear__case").get(pk=pk, smear__case__in=cases)
    except (AnalysisJob.DoesNotExist, ValueError, TypeError):
        raise Http404("No such analysis.") from None

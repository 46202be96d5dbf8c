"""Every role rule in one place: who may do what, for the portal, the API and the services.

Predicates take a user (and the object, where the rule depends on it) and return a bool; callers
that must refuse call ``require_role``, which raises ``NotAllowed`` (403 in the portal and the API).
Whether an object is *visible* at all is a separate question (the apps' selectors: 404).
"""

from core.errors import NotAllowed

ROLE_PAGE_REFUSED = "Your role does not give access to this page."


def require_role(condition, message=ROLE_PAGE_REFUSED):
    """403 with ``message`` unless ``condition`` holds.

    Object endpoints look the object up first (404 when it is not visible) and check the role
    afterwards, so a 403 only ever concerns an object the user may already see.
    """
    if not condition:
        raise NotAllowed(message)


def _signed_in(user):
    return bool(getattr(user, "is_authenticated", False))


def works_with_patients(user):
    """Clinicians register patients and submit cases."""
    return _signed_in(user) and user.is_clinician


def works_with_cases(user):
    """Clinicians (their site's cases) and pathologists (their laboratory's) open cases."""
    return _signed_in(user) and (user.is_clinician or user.is_pathologist)


def reviews_cases(user):
    """Pathologists have a review queue."""
    return _signed_in(user) and user.is_pathologist


def administers_organisation(user):
    """Lab admins manage their organisation's users and read its audit trail."""
    return _signed_in(user) and user.is_lab_admin


def reads_case(user):
    """Anyone whose role opens cases or looks after their laboratory's analyses."""
    return works_with_cases(user) or administers_organisation(user)


def _of_reading_laboratory(user, case):
    return case.laboratory_id == user.organisation_id


def is_case_pathologist(user, case):
    """The pathologists of the case's reading laboratory: they sign, amend and re-run its analysis."""
    return reviews_cases(user) and _of_reading_laboratory(user, case)


def retries_analysis(user, case):
    """Pathologists and lab admins of the case's reading laboratory retry a failed analysis."""
    return (reviews_cases(user) or administers_organisation(user)) and _of_reading_laboratory(user, case)


def watches_analyses(user):
    """Pathologists and lab admins see their laboratory's analysis jobs (failed-jobs page, API)."""
    return reviews_cases(user) or administers_organisation(user)


def reads_model_performance(user):
    """Lab admins read how the AI does at the sites referring to their laboratory (monitoring)."""
    return administers_organisation(user)


def sees_monitoring_alerts(user):
    """Pathologists and lab admins see and acknowledge their laboratory's monitoring alerts."""
    return watches_analyses(user)

"""Recording the audit trail. Events are append-only (see AuditEvent)."""

from audit.models import AuditEvent
from core.client_ip import client_ip

# Records whose page-view event this session has written (newest last), so reloading a case page,
# or going back and forth between its pages, adds one event per case per session, not one per load.
VIEWED_SESSION_KEY = "audit_viewed"
VIEWED_REMEMBERED = 500  # bounds the session's size; a record viewed longer ago is recorded again


def audit(action, *, actor=None, case=None, patient=None, request=None, **detail):
    """Record one event."""
    if actor is None and request is not None and request.user.is_authenticated:
        actor = request.user
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_organisation_id=getattr(actor, "organisation_id", None),
        case=case,
        patient=patient if patient is not None else getattr(case, "patient", None),
        ip_address=client_ip(request),
        detail=detail,
    )


def audit_page_view(request, *, case=None, patient=None, **detail):
    """A VIEWED event for a portal page of a case or patient, once per record per session.

    Downloads (a report, an export) and API reads call ``audit`` instead: each of them is recorded.
    """
    if _viewed_before(request, case, patient):
        return None
    return audit(AuditEvent.Action.VIEWED, case=case, patient=patient, request=request, **detail)


def _viewed_before(request, case, patient):
    """True when this session already recorded a view of the record; else remember it and say False.

    Without a saved session (no key) nothing is remembered, so no session row is created for it.
    """
    session = getattr(request, "session", None)
    if session is None or not session.session_key:
        return False
    record = f"case:{case.pk}" if case is not None else f"patient:{getattr(patient, 'pk', None)}"
    seen = list(session.get(VIEWED_SESSION_KEY, []))
    if record in seen:
        return True
    session[VIEWED_SESSION_KEY] = (seen + [record])[-VIEWED_REMEMBERED:]
    return False

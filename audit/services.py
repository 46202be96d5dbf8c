"""Recording the audit trail. Events are append-only (see AuditEvent)."""

from audit.models import AuditEvent
from core.client_ip import client_ip


def audit(action, *, actor=None, case=None, patient=None, request=None, **detail):
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

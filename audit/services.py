"""Recording the audit trail. Events are append-only (see AuditEvent)."""
from django.conf import settings

from audit.models import AuditEvent


def client_ip(request):
    if request is None:
        return None
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        # Behind our own reverse proxy the first forwarded address is the client's.
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip() or None
    return request.META.get("REMOTE_ADDR") or None


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

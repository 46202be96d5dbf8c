"""Who may read which audit events."""

from django.db.models import Q

from audit.models import AuditEvent
from core.permissions import administers_organisation


def audit_events_visible_to(user):
    """Lab admins read the trail of their organisation: its people and its cases."""
    if not administers_organisation(user):
        return AuditEvent.objects.none()
    org = user.organisation_id
    return AuditEvent.objects.filter(
        Q(actor_organisation_id=org)
        | Q(case__site_id=org)
        | Q(case__laboratory_id=org)
        | Q(patient__organisation_id=org)
    ).select_related("actor", "case", "patient")

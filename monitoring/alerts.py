"""Raising, resolving and acknowledging monitoring alerts.

An alert is raised when a site's recent results cross a level (monitoring.assessment) and none of
that kind is still unresolved for the site and version; it is resolved when a later evaluation
finds the condition gone, so the next drop raises a new one. Acknowledging says a person has seen
it (audited); it stays unresolved, so it is not raised again while the condition lasts.
"""

import logging
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from accounts.models import Organisation, User
from audit.models import AuditEvent
from audit.services import audit
from core import permissions
from core.errors import DomainError
from monitoring import assessment, windows
from monitoring.models import CaseOutcome, MonitoringAlert
from monitoring.versions import heavy_version_fields, versions_with_metrics

logger = logging.getLogger(__name__)


class AlreadyAcknowledged(DomainError):
    code = "already_acknowledged"
    http_status = 409


CHECKS = {
    MonitoringAlert.Kind.AGREEMENT: assessment.agreement_alert,
    MonitoringAlert.Kind.DRIFT: assessment.drift_alert,
}


def _message(kind, site_name, version_name, value, limit, cases):
    if kind == MonitoringAlert.Kind.AGREEMENT:
        return (
            f"{site_name}: pathologists agreed with model {version_name} on {value:.0%} of the last {cases} "
            f"signed cases, significantly below the {limit:.0%} it was validated at. Review this site's "
            f"images (stain, camera, lamp) before relying on its AI suggestions."
        )
    return (
        f"{site_name}: {value:.0%} of the recent images (last {cases} signed cases) are outside the conditions "
        f"model {version_name} was validated on (alert level {limit:.0%}). Check this site's stain, camera "
        f"and lamp; its AI suggestions are less reliable until then."
    )


def recipients(laboratory_id):
    if settings.MONITORING_ALERT_EMAILS:
        return list(settings.MONITORING_ALERT_EMAILS)
    return list(
        User.objects.filter(organisation_id=laboratory_id, role=User.Role.LAB_ADMIN, is_active=True)
        .exclude(email="")
        .order_by("pk")
        .values_list("email", flat=True)
    )


def send_alert_email(alert_id):
    """E-mail an alert (after its transaction commits); a failure is logged, the alert stays."""
    alert = (
        MonitoringAlert.objects.select_related("site", "model_version", "laboratory")
        .defer(*heavy_version_fields("model_version__"))
        .get(pk=alert_id)
    )
    to = recipients(alert.laboratory_id)
    if not to:
        return []
    try:
        send_mail(
            subject=f"[Telediag] {alert.get_kind_display()}: {alert.site.name}",
            message=f"{alert.message}\n\nLaboratory: {alert.laboratory.name}\nSee the model performance page "
            f"of the portal (/monitoring/performance/) and acknowledge the alert there.",
            from_email=None,
            recipient_list=to,
        )
    except OSError:
        logger.exception("Monitoring alert %s could not be e-mailed", alert_id)
        return []
    MonitoringAlert.objects.filter(pk=alert_id).update(emailed_to=to)
    return to


def _raise(key, kind, value, limit, cases, names):
    laboratory_id, site_id, version_id = key
    try:
        with transaction.atomic():
            alert = MonitoringAlert.objects.create(
                laboratory_id=laboratory_id,
                site_id=site_id,
                model_version_id=version_id,
                kind=kind,
                value=value,
                limit=limit,
                window_cases=cases,
                message=_message(kind, *names, value, limit, cases),
            )
    except IntegrityError:  # raised meanwhile by another evaluation
        return None
    logger.warning("Monitoring alert %s: %s", alert.pk, alert.message)
    if settings.EMAIL_MODE != "off":  # TELEDIAG_EMAIL: alerts are e-mailed whenever e-mail is on
        transaction.on_commit(partial(send_alert_email, alert.pk), robust=True)
    return alert


def evaluate(laboratory_id, site_id, version_id):
    """Check one site and version; returns the alerts raised now (at most one of each kind)."""
    key = (laboratory_id, site_id, version_id)
    counts = windows.recent(laboratory_id, site_id=site_id, version_id=version_id).get((site_id, version_id))
    version = versions_with_metrics([version_id]).get(version_id)
    if not counts or version is None:
        return []
    unresolved = set(
        MonitoringAlert.objects.filter(
            laboratory_id=laboratory_id, site_id=site_id, model_version_id=version_id, resolved_at__isnull=True
        ).values_list("kind", flat=True)
    )
    raised = []
    for kind, check in CHECKS.items():
        result = check(counts, version)
        if result is None:
            continue
        crossed, value, limit = result
        if crossed and kind not in unresolved:
            alert = _raise(key, kind, value, limit, counts["cases"], (_site_name(site_id), version.name))
            raised += [alert] if alert else []
        elif not crossed and kind in unresolved:
            MonitoringAlert.objects.filter(
                laboratory_id=laboratory_id,
                site_id=site_id,
                model_version_id=version_id,
                kind=kind,
                resolved_at__isnull=True,
            ).update(resolved_at=timezone.now())
    return raised


def _site_name(site_id):
    return Organisation.objects.filter(pk=site_id).values_list("name", flat=True).first() or f"Site {site_id}"


def evaluate_all():
    """Every site and version with signed cases (the periodic check). Returns how many alerts it raised."""
    keys = (
        CaseOutcome.objects.filter(model_version__isnull=False)
        .values_list("laboratory_id", "site_id", "model_version_id")
        .distinct()
        .order_by()
    )
    return sum(len(evaluate(*key)) for key in keys)


def alerts_for(user):
    """The alerts of the user's laboratory (pathologists and lab admins), newest first."""
    if not permissions.sees_monitoring_alerts(user):
        return MonitoringAlert.objects.none()
    return (
        MonitoringAlert.objects.filter(laboratory_id=user.organisation_id)
        .select_related("site", "model_version", "acknowledged_by")
        .defer(*heavy_version_fields("model_version__"))
    )


def get_alert_for(user, pk):
    try:
        return alerts_for(user).get(pk=pk)
    except (MonitoringAlert.DoesNotExist, ValueError, TypeError):
        raise Http404("No such alert.") from None


def acknowledge(*, user, alert, request=None):
    """Mark the alert seen by ``user`` (audited). Acknowledging twice is refused."""
    permissions.require_role(
        permissions.sees_monitoring_alerts(user), "Only the laboratory's staff acknowledge alerts."
    )
    now = timezone.now()
    with transaction.atomic():
        changed = MonitoringAlert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
            acknowledged_by=user, acknowledged_at=now
        )
        if not changed:
            raise AlreadyAcknowledged("This alert was already acknowledged.")
        audit(
            AuditEvent.Action.ALERT_ACKNOWLEDGED,
            actor=user,
            request=request,
            alert=alert.pk,
            kind=alert.kind,
            site=alert.site_id,
            model_version=alert.model_version_id,
        )
    alert.refresh_from_db()
    return alert

"""Security events in the audit trail: sign-ins, failures, lockouts, credential changes.

They carry no case or patient. The account concerned is the actor when it is known (a failed
sign-in names an existing account in detail.username and still belongs to its organisation, so
that organisation's lab admins see attacks on their people).
"""

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.models import AuditEvent
from core.client_ip import client_ip

Action = AuditEvent.Action
_USERNAME_LIMIT = 150  # what is recorded of a username typed at a sign-in form


def security_event(action, *, user=None, request=None, username=None, **detail):
    """Record one security event; ``user`` is the account concerned (None for an unknown name)."""
    if user is None and username:
        user = get_user_model().objects.filter(username=username).first()
    if username is not None:
        detail["username"] = str(username)[:_USERNAME_LIMIT]
    if request is not None:
        detail.setdefault("channel", _channel(request))
    return AuditEvent.objects.create(
        action=action,
        actor=user,
        actor_organisation_id=getattr(user, "organisation_id", None),
        ip_address=client_ip(request),
        detail=detail,
    )


def _channel(request):
    path = getattr(request, "path", "") or ""
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/admin/"):
        return "admin"
    return "portal"


@receiver(user_logged_in, dispatch_uid="security-audit-logged-in")
def _logged_in(sender, request, user, **kwargs):
    security_event(Action.LOGGED_IN, user=user, request=request)


@receiver(user_logged_out, dispatch_uid="security-audit-logged-out")
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        security_event(Action.LOGGED_OUT, user=user, request=request)


@receiver(user_login_failed, dispatch_uid="security-audit-login-failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    security_event(Action.LOGIN_FAILED, request=request, username=credentials.get("username") or "")


@receiver(user_locked_out, dispatch_uid="security-audit-locked-out")
def _locked_out(sender, request, username, ip_address, **kwargs):
    security_event(Action.LOCKED_OUT, request=request, username=username or "")

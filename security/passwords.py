"""Passwords chosen by the user versus set by an admin (then changed at the next sign-in).

Accounts created, and passwords reset, by a lab admin (portal, API) or a superuser (Django admin)
carry a temporary password: PasswordState.must_change until the user picks their own. Passwords
set at the command line (createsuperuser, seed_demo) are the operator's own choice.
"""

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.utils import timezone

from audit.models import AuditEvent
from security.audit import security_event
from security.models import PasswordState

SESSION_KEY = "telediag_must_change_password"


def must_change_password(user):
    state = PasswordState.objects.filter(user=user).only("must_change").first()
    return bool(state and state.must_change)


@receiver(user_logged_in, dispatch_uid="security-password-state-at-sign-in")
def _remember_at_sign_in(sender, request, user, **kwargs):
    # Read once at sign-in and kept in the session: no query on every later request.
    if getattr(request, "session", None) is not None:
        request.session[SESSION_KEY] = must_change_password(user)


def password_change(*, user, new_password, request=None):
    """The user sets their own password (validated by the caller's form): no forced change after."""
    user.set_password(new_password)
    user.save(update_fields=["password"])
    PasswordState.objects.update_or_create(user=user, defaults={"must_change": False, "changed_at": timezone.now()})
    if request is not None and getattr(request, "session", None) is not None:
        request.session[SESSION_KEY] = False
    security_event(AuditEvent.Action.PASSWORD_CHANGED, user=user, request=request)


def password_mark_chosen(user):
    """Record the current password as the user's own choice (an account migrated with its password)."""
    PasswordState.objects.update_or_create(user=user, defaults={"must_change": False})


def password_set_by_admin(user, *, admin=None, request=None, new_account=False):
    """A lab admin or superuser set ``user``'s password: they choose their own at the next sign-in."""
    PasswordState.objects.update_or_create(user=user, defaults={"must_change": True})
    if not new_account:
        security_event(
            AuditEvent.Action.PASSWORD_RESET,
            user=user,
            request=request,
            reset_by=admin.get_username() if admin is not None else None,
        )

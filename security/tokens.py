"""API tokens are issued only after the second factor, for the roles that must use one."""

from rest_framework import serializers

from audit.models import AuditEvent
from security import two_factor
from security.audit import security_event
from security.passwords import must_change_password
from security.policy import requires_second_factor


def require_second_factor_for_token(request, user, code):
    """Raise a 400 naming otp_code unless ``user`` needs no second factor or ``code`` is accepted.

    A temporary password (set by an admin) gets no token either: it is changed in the portal first.
    """
    if must_change_password(user):
        raise serializers.ValidationError(
            {
                "password": [
                    "This is a temporary password: sign in to the portal and choose your own first.",
                ]
            }
        )
    if not requires_second_factor(user):
        return
    if not two_factor.has_second_factor(user):
        raise serializers.ValidationError(
            {
                "otp_code": [
                    "Your role needs two-factor sign-in: set it up in the portal first, then send a code here.",
                ]
            }
        )
    if not code or not isinstance(code, str):
        raise serializers.ValidationError({"otp_code": ["Send a current code from your authenticator app."]})
    device = two_factor.second_factor_verify(user, code)
    if device is None:
        security_event(AuditEvent.Action.LOGIN_FAILED, user=user, request=request, step="second_factor")
        raise serializers.ValidationError({"otp_code": ["Wrong or expired code."]})
    if device.persistent_id.startswith("otp_static"):
        security_event(
            AuditEvent.Action.RECOVERY_CODE_USED, user=user, request=request, codes_left=device.token_set.count()
        )

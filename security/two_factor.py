"""Second factor with django-otp: a TOTP authenticator app, and ten single-use recovery codes.

Enrolment makes an unconfirmed TOTP device; the first correct code confirms it, creates the
recovery codes (shown once) and verifies the session. A lab admin (or a superuser in the admin)
resets a user's second factor when a phone is lost; the user enrols again at the next sign-in.
"""

import base64
import io

import qrcode
import qrcode.image.svg
from django.db import transaction
from django_otp import devices_for_user, login as otp_login, user_has_device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from security.audit import security_event

Action = AuditEvent.Action
RECOVERY_CODES = 10
DEVICE_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"


def has_second_factor(user):
    return user_has_device(user, confirmed=True)


def totp_enrolment_device(user):
    """The unconfirmed TOTP device being enrolled (one per user, made on first use)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


def secret_text(device):
    """The key in base32, in groups of four, for typing into an app by hand."""
    secret = base64.b32encode(device.bin_key).decode()
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_code_data_uri(device):
    """The otpauth:// address as an SVG QR code, in a data: URI (allowed by the CSP's img-src)."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _normalise(code):
    return (code or "").strip().replace(" ", "").replace("-", "").lower()


def totp_enrolment_confirm(request, user, device, code):
    """Confirm the device with its first code; returns the new recovery codes, or None if wrong."""
    with transaction.atomic():
        if not device.verify_token(_normalise(code)):
            return None
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        codes = recovery_codes_replace(user)
        security_event(Action.TWO_FACTOR_ENROLLED, user=user, request=request, device="totp")
    otp_login(request, device)
    return codes


def recovery_codes_replace(user):
    """New recovery codes (the old ones stop working); returns them to be shown once."""
    StaticDevice.objects.filter(user=user).delete()
    static = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=static, token=code) for code in codes])
    return codes


def second_factor_verify(user, code):
    """The confirmed device that accepts ``code`` (a TOTP code or a recovery code), or None."""
    code = _normalise(code)
    if not code:
        return None
    with transaction.atomic():
        for device in devices_for_user(user, confirmed=True, for_verify=True):
            if device.verify_token(code):
                return device
    return None


def second_factor_login(request, user, device):
    """Mark the session as verified by ``device`` (django-otp) and record it."""
    otp_login(request, device)
    if isinstance(device, StaticDevice):
        security_event(Action.RECOVERY_CODE_USED, user=user, request=request, codes_left=device.token_set.count())


def second_factor_reset(*, admin, user, request=None):
    """Remove every device of ``user``: they enrol again at their next sign-in."""
    with transaction.atomic():
        removed = 0
        for device in devices_for_user(user, confirmed=None):
            device.delete()
            removed += 1
        security_event(Action.TWO_FACTOR_RESET, user=user, request=request, reset_by=admin.get_username())
    return removed

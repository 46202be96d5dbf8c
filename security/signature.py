"""Electronic signature: signing or amending a diagnosis needs the signer's password or a current
authentication code (TOTP) entered again, at that moment, whatever the session.

A wrong password counts as a failed sign-in (audit trail, lockout): it is the same secret.
"""

from django.contrib.auth import authenticate
from django.db import transaction
from django_otp import devices_for_user
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.errors import DomainError
from security.choices import SignatureMethod

Method = SignatureMethod
MISSING = "Re-enter your password, or a current code from your authenticator app, to sign."


class SignatureRefused(DomainError):
    code = "signature_invalid"


def verify_signature(request, user, *, password="", otp_code=""):
    """The method that proved the signer's identity, or SignatureRefused naming the field at fault."""
    otp_code = (otp_code or "").strip().replace(" ", "")
    if otp_code:
        if not _totp_matches(user, otp_code):  # recovery codes sign in, they do not sign
            raise SignatureRefused(
                "The authentication code is wrong or has expired.", details={"otp_code": ["Wrong or expired code."]}
            )
        return Method.TOTP
    if password:
        if authenticate(request, username=user.get_username(), password=password) != user:
            raise SignatureRefused(
                "The password is wrong; the diagnosis was not signed.", details={"password": ["Wrong password."]}
            )
        return Method.PASSWORD
    raise SignatureRefused(MISSING, details={"password": [MISSING]})


def _totp_matches(user, code):
    with transaction.atomic():  # for_verify locks the devices: a code is accepted once
        return any(
            device.verify_token(code)
            for device in devices_for_user(user, for_verify=True)
            if isinstance(device, TOTPDevice)
        )

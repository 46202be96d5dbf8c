"""Choices other apps store: kept here so that they import them downward."""

from django.db import models


class SignatureMethod(models.TextChoices):
    """How a signer proved it was them when signing (electronic signature)."""

    PASSWORD = "password", "Password re-entered"
    TOTP = "totp", "Authentication code"

from django.conf import settings
from django.db import models


class PasswordState(models.Model):
    """Whether a user must choose a new password before anything else.

    Set when a lab admin or a superuser sets the password (a new account's temporary password, a
    reset); cleared when the user changes it themselves (security.passwords).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="password_state")
    must_change = models.BooleanField(default=True)
    changed_at = models.DateTimeField(null=True, blank=True, help_text="When the user last chose their password.")

    def __str__(self):
        return f"{self.user}: {'must change' if self.must_change else 'chosen'}"

"""The audit trail: who did what to which record, when, from where."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class AuditEvent(models.Model):
    """Append-only trail: who did what to which record, when, from where."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        VIEWED = "viewed", "Viewed"
        CHANGED = "changed", "Changed"
        SUBMITTED = "submitted", "Submitted"
        SIGNED = "signed", "Signed"
        AMENDED = "amended", "Amended"
        SIGN_REFUSED = "sign_refused", "Signature refused"
        ANALYSIS_REQUESTED = "analysis_requested", "Analysis requested"
        MODEL_REGISTERED = "model_registered", "Model version registered"
        MODEL_PROMOTED = "model_promoted", "Model version promoted"
        # Security events (no case or patient): sign-ins, lockouts, credentials (security app).
        LOGGED_IN = "logged_in", "Signed in"
        LOGGED_OUT = "logged_out", "Signed out"
        LOGIN_FAILED = "login_failed", "Sign-in failed"
        LOCKED_OUT = "locked_out", "Locked out"
        TOKEN_ISSUED = "token_issued", "API token issued"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        PASSWORD_RESET = "password_reset", "Password reset by an admin"
        TWO_FACTOR_ENROLLED = "2fa_enrolled", "Second factor enrolled"
        TWO_FACTOR_RESET = "2fa_reset", "Second factor reset"
        RECOVERY_CODE_USED = "recovery_code_used", "Recovery code used"
        # Model monitoring (monitoring app).
        ALERT_ACKNOWLEDGED = "alert_acknowledged", "Monitoring alert acknowledged"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    actor_organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, null=True, related_name="+"
    )
    action = models.CharField(max_length=24, choices=Action.choices)
    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events")
    patient = models.ForeignKey(
        "cases.Patient", on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        # The trail filtered by a rare action (sign_refused): newest first without scanning every event.
        indexes = [models.Index(fields=["action", "-created_at", "-id"], name="audit_action_newest")]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Audit events are append-only.")

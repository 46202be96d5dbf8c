"""In-app notices for one user (and, when configured, an e-mail of each)."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Notification(models.Model):
    class Kind(models.TextChoices):
        CASE_SIGNED = "case_signed", "Case signed"
        CASE_AMENDED = "case_amended", "Case amended"
        URGENT_CASE = "urgent_case", "Urgent case in the queue"
        ANALYSIS_FAILED = "analysis_failed", "Analysis failed"

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    case = models.ForeignKey(
        "cases.Case", on_delete=models.CASCADE, null=True, blank=True, related_name="notifications"
    )
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=300, blank=True, help_text="Where the notice leads (a path in the portal).")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["recipient", "-created_at", "-id"], name="notification_newest"),
            # The navbar badge counts these on every page.
            models.Index(fields=["recipient"], condition=Q(read_at__isnull=True), name="notification_unread"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} for {self.recipient}: {self.title}"

    @property
    def is_read(self):
        return self.read_at is not None

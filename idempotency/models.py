"""One row per (user, scope, key): the first answer to a request sent with that Idempotency-Key."""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class IdempotencyKey(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=64, help_text="What the key was used for, e.g. cases.submit.")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the request's content.")
    resource_id = models.BigIntegerField(null=True, blank=True, help_text="What the first request created.")
    location = models.CharField(max_length=500, blank=True)
    body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder, help_text="The first answer's body.")
    headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_age")]  # the daily purge
        constraints = [
            models.UniqueConstraint(fields=["user", "scope", "key"], name="one_idempotency_key_per_user_and_scope"),
        ]

    def __str__(self):
        return f"{self.scope} {self.key!r} of user {self.user_id}"

"""Requests that must take effect once, however often a client sends them (``Idempotency-Key``).

A client that times out cannot know whether its request was applied; it sends it again with the
same key. The first request holds the key (its row is inserted in the same transaction as the work,
so a twin arriving meanwhile waits on the unique index, then finds it); every later request with
that key from that user gets the first answer back. Reusing a key for a different request is an
error, never a silent replay. A request that failed stored nothing, key included: sending it again
runs it again.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from idempotency.models import IdempotencyKey

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces (as the IETF draft's examples)


class IdempotencyError(Exception):
    """Base of the errors this module raises (views turn them into 400 / 422)."""

    code = "idempotency_key"
    http_status = 400

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class InvalidKey(IdempotencyError):
    code = "invalid_idempotency_key"


class KeyReused(IdempotencyError):
    """The key was used before for a different request (IETF draft: 422)."""

    code = "idempotency_key_reused"
    http_status = 422


@dataclass
class Outcome:
    record: IdempotencyKey
    replayed: bool  # True: the first request's answer, nothing was done now


def clean_key(value):
    value = (value or "").strip()
    if not KEY_PATTERN.match(value):
        raise InvalidKey("The Idempotency-Key header must be 1 to 255 printable characters without spaces.")
    return value


def fingerprint(*parts, files=()):
    """sha256 over the request's fields and the content of its files (their positions read back)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    for upload in files:
        digest.update(repr(getattr(upload, "name", "")).encode())
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
        digest.update(b"\1")
    return digest.hexdigest()


def run_once(*, user, scope, key, fingerprint, action):
    """Run ``action(record)`` once for (user, scope, key); it fills the record's answer fields
    (resource_id, location, body, headers) inside the same transaction as its own work.

    Returns an Outcome. Raises KeyReused when the key was used for another request, and whatever
    ``action`` raises (nothing is stored then, key included).
    """
    found = _find(user, scope, key)
    if found is None:
        with transaction.atomic():
            try:
                with transaction.atomic():  # a twin request holding the key: wait for it, then replay
                    record = IdempotencyKey.objects.create(user=user, scope=scope, key=key, fingerprint=fingerprint)
            except IntegrityError:
                record = None
            if record is not None:
                action(record)
                record.save(update_fields=["resource_id", "location", "body", "headers"])
                return Outcome(record, replayed=False)
        found = _find(user, scope, key)
    if found.fingerprint != fingerprint:
        raise KeyReused(
            "This Idempotency-Key was already used for a different request; use a new key for a new request."
        )
    return Outcome(found, replayed=True)


def _find(user, scope, key):
    return IdempotencyKey.objects.filter(user=user, scope=scope, key=key).first()


def purge_expired(*, now=None):
    """Forget keys older than ``IDEMPOTENCY_KEY_RETENTION_DAYS``; returns how many went.

    A client retries within minutes; a key kept for ever would keep its first answer's body (with
    the patient's name) long after anyone could need it.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.IDEMPOTENCY_KEY_RETENTION_DAYS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted

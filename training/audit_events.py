"""Audit events of the model registry: a model version registered, a model version promoted.

Which model's suggestions pathologists see is the most consequential setting of the system, so each
registration and promotion leaves an AuditEvent: who (the admin user, or for a training run the
user who requested it; no actor from the command line, where ``source`` says "command line"), the
version's name and sha256 and, for a promotion, the version that was active before.
"""

from audit.models import AuditEvent
from audit.services import audit

MODEL_REGISTERED = AuditEvent.Action.MODEL_REGISTERED
MODEL_PROMOTED = AuditEvent.Action.MODEL_PROMOTED
COMMAND_LINE = "command line"


def _version_detail(version):
    return {
        "model_version": version.name,
        "model_version_id": version.pk,
        "architecture": version.architecture,
        "sha256": version.sha256,
    }


def audit_registration(version, *, actor=None, source=COMMAND_LINE, request=None):
    return audit(MODEL_REGISTERED, actor=actor, request=request, source=source, **_version_detail(version))


def audit_promotion(version, previous, *, actor=None, source=COMMAND_LINE, request=None):
    """``previous``: the version active just before (None when there was none; ``version`` itself
    when it already was)."""
    return audit(
        MODEL_PROMOTED,
        actor=actor,
        request=request,
        source=source,
        **_version_detail(version),
        previous_version=previous.name if previous is not None else None,
        previous_version_id=previous.pk if previous is not None else None,
        previous_sha256=previous.sha256 if previous is not None else None,
    )

"""Registering and promoting AI models are audit events."""
from cases.models import AuditEvent
from training import registry
from training.ml.classes import CLASS_NAMES
from training.models import ModelVersion


def test_model_registration_and_promotion_are_audited(db, django_user_model):
    root = django_user_model.objects.create_superuser("root_admin", "root@example.org", "x" * 12)
    version = ModelVersion.objects.create(
        name="convnet-audit", file_path="/nonexistent/model.keras", sha256="0" * 64, class_names=list(CLASS_NAMES),
        input_size=64, architecture="convnet_bn", trained_by=root,
    )
    registered = AuditEvent.objects.get(action="model_registered")
    assert registered.actor == root and registered.detail["model_version"] == "convnet-audit"
    registry.activate(version, verify=False, by=root)
    registry.activate(version.pk, verify=False)  # from a command: no user
    promoted = list(AuditEvent.objects.filter(action="model_promoted").order_by("pk"))
    assert [(event.actor, event.detail["channel"]) for event in promoted] == [(root, "admin"), (None, "command")]
    assert promoted[0].detail["model_version_id"] == version.pk

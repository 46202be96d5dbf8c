"""Registering and promoting a model version leave an audit event (who, which version, which before)."""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from audit.models import AuditEvent
from tests.training.test_tasks_and_admin import make_run
from training import registry
from training.audit_events import MODEL_PROMOTED, MODEL_REGISTERED
from training.tasks import retrain_task

pytestmark = pytest.mark.django_db


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


def test_command_line_registration_and_promotion_are_audited_without_actor(trained_output):
    for arch in ("convnet", "convnet_bn"):
        call_command("register_run", str(trained_output / arch), "--name", arch, stdout=io.StringIO())
    call_command("register_run", str(trained_output / "convnet"), stdout=io.StringIO())  # already registered
    registered = events(MODEL_REGISTERED)
    assert [event.detail["model_version"] for event in registered] == ["convnet", "convnet_bn"]
    first = registry.get_version("convnet")
    assert registered[0].actor is None and registered[0].detail["source"] == "command line"
    assert registered[0].detail["sha256"] == first.sha256 and registered[0].detail["model_version_id"] == first.pk

    call_command("promote", "convnet", stdout=io.StringIO())
    call_command("promote", "convnet_bn", stdout=io.StringIO())
    promoted = events(MODEL_PROMOTED)
    assert [(e.detail["model_version"], e.detail["previous_version"]) for e in promoted] == [
        ("convnet", None),
        ("convnet_bn", "convnet"),
    ]
    assert promoted[1].actor is None and promoted[1].detail["source"] == "command line"
    assert promoted[1].detail["sha256"] == registry.get_version("convnet_bn").sha256
    assert promoted[1].detail["previous_sha256"] == first.sha256


def test_a_refused_promotion_is_not_audited(convnet_result):
    version = registry.register_model(convnet_result)
    registry.model_path(version).write_bytes(b"altered")
    with pytest.raises(registry.RegistryError):
        registry.activate(version)
    assert not events(MODEL_PROMOTED)


def test_admin_promotion_is_audited_with_the_admin_user(admin_client, admin_user, convnet_result):
    old = registry.register_model(convnet_result)
    registry.activate(old)
    new = registry.register_model({**convnet_result, "architecture": "convnet_bn", "sha256": None})
    admin_client.post(
        reverse("admin:training_modelversion_changelist"),
        {"action": "promote", "_selected_action": [new.pk]},
        follow=True,
    )
    event = events(MODEL_PROMOTED)[-1]
    assert event.actor == admin_user and event.ip_address == "127.0.0.1"
    assert event.detail["source"] == "admin"
    assert (event.detail["model_version"], event.detail["previous_version"]) == (new.name, old.name)


def test_training_run_registration_and_promotion_are_audited_with_the_requester(synthetic_data, trained_output, world):
    run = make_run(synthetic_data, trained_output, promote="best", requested_by=world.lab_admin)
    retrain_task(run.pk)
    run.refresh_from_db()
    version = run.versions.get()
    (registered,), (promoted,) = events(MODEL_REGISTERED), events(MODEL_PROMOTED)
    for event in (registered, promoted):
        assert event.actor == world.lab_admin and event.actor_organisation_id == world.lab_admin.organisation_id
        assert event.detail["source"] == f"training run {run.pk}" and event.detail["model_version"] == version.name
    assert promoted.detail["previous_version"] is None

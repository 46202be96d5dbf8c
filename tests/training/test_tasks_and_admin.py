import pytest
from django.urls import reverse

from tests.training.conftest import BATCH, EPOCHS, SIZE
from training import registry, services
from training.models import ModelVersion, TrainingRun
from training.tasks import retrain_task

pytestmark = pytest.mark.django_db


def make_run(data_dir, output_dir, requested_by=None, status=TrainingRun.Status.QUEUED, error="", **options):
    values = dict(
        data_dir=str(data_dir),
        architectures=["convnet"],
        epochs=EPOCHS,
        image_size=SIZE,
        split_mode="random",
        seed=7,
        batch_size=BATCH,
        augment=False,
        output_dir=str(output_dir),
    )
    values.update(options)
    return TrainingRun.objects.create(
        options=services.RetrainOptions(**values).to_json(), requested_by=requested_by, status=status, error=error
    )


def test_retrain_task_runs_the_retrain_service(synthetic_data, trained_output, world, monkeypatch):
    calls = []
    original = services.retrain

    def spy(options, **kwargs):
        calls.append((options, kwargs))
        return original(options, **kwargs)

    monkeypatch.setattr(services, "retrain", spy)
    run = make_run(synthetic_data, trained_output, promote="best", requested_by=world.lab_admin)

    retrain_task(run.pk)  # what the worker on the `training` queue executes

    run.refresh_from_db()
    assert len(calls) == 1 and calls[0][0].architectures == ["convnet"]
    assert calls[0][1]["trained_by"] == world.lab_admin
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    version = run.versions.get()
    assert version.trained_by == world.lab_admin and version.is_active
    assert run.started_at and run.finished_at and "promoted" in run.progress
    assert "Architecture" in run.summary and version.name in run.summary
    assert "already trained" in run.log  # resumed from the output folder

    retrain_task(run.pk)  # a duplicate delivery of a finished run does nothing
    assert ModelVersion.objects.count() == 1


def test_retrain_task_records_a_clear_error(tmp_path):
    run = make_run(tmp_path / "missing", tmp_path / "out")
    retrain_task(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "Data folder not found" in run.error
    assert not ModelVersion.objects.exists()


def test_retrain_task_gives_a_run_without_output_folder_its_own(synthetic_data, settings, monkeypatch):
    monkeypatch.setattr(
        services,
        "retrain",
        lambda options, **kw: (_ for _ in ()).throw(services.TrainingError(f"stop in {options.output_dir}")),
    )
    run = make_run(synthetic_data, "")
    retrain_task(run.pk)
    run.refresh_from_db()
    assert run.options["output_dir"] == str(settings.VAR_DIR / "training" / f"run-{run.pk}")
    assert run.error == f"stop in {run.options['output_dir']}"


def test_retrain_task_is_routed_to_the_training_queue():
    from telediag.celery import app

    assert retrain_task.name == "training.tasks.retrain_task"
    assert app.amqp.router.route({}, retrain_task.name, (), {})["queue"].name == "training"
    assert retrain_task.acks_late is False  # never redelivered while it trains for hours
    assert retrain_task.soft_time_limit >= 24 * 3600


def test_enqueue_failure_marks_the_run_failed(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(retrain_task, "delay", broken)
    run = make_run(tmp_path, tmp_path)
    assert services.enqueue_training_run(run) is False
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "broker down" in run.error


# ------------------------------------------------------------------------------------------------ admin


def test_admin_lists_versions_with_accuracy_and_active(admin_client, convnet_result):
    version = registry.register_model(convnet_result)
    registry.activate(version)
    response = admin_client.get(reverse("admin:training_modelversion_changelist"))
    content = response.content.decode()
    assert response.status_code == 200
    assert version.name in content and "Val. accuracy" in content and "Test accuracy" in content
    assert "100.00%" in content

    response = admin_client.get(reverse("admin:training_modelversion_change", args=[version.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert "data:image/png;base64," in content  # plots shown
    assert version.sha256 in content
    assert 'name="sha256"' not in content and 'name="architecture"' not in content  # read-only facts
    assert 'name="notes"' in content
    assert admin_client.get(reverse("admin:training_modelversion_add")).status_code == 403


def test_admin_promote_action(admin_client, convnet_result, trained_output):
    first = registry.register_model(convnet_result)
    second = registry.register_model(
        {
            **convnet_result,
            "architecture": "convnet_bn",
            "sha256": None,
            "model_path": str(trained_output / "convnet_bn" / "model.keras"),
            "output_dir": str(trained_output / "convnet_bn"),
        }
    )
    registry.activate(first)
    url = reverse("admin:training_modelversion_changelist")

    response = admin_client.post(url, {"action": "promote", "_selected_action": [second.pk]}, follow=True)
    assert f"{second.name[1:]} is now the active model" in response.content.decode()  # capitalised
    assert list(ModelVersion.objects.filter(is_active=True)) == [second]

    response = admin_client.post(url, {"action": "promote", "_selected_action": [first.pk, second.pk]}, follow=True)
    assert "Select exactly one" in response.content.decode()
    assert list(ModelVersion.objects.filter(is_active=True)) == [second]


def test_admin_starts_a_training_run(
    admin_client, admin_user, synthetic_data, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(retrain_task, "delay", lambda run_id: queued.append(run_id))
    form = {
        "data_dir": str(synthetic_data),
        "architectures": ["convnet", "vgg19"],
        "epochs": 2,
        "image_size": 64,
        "split_mode": "grouped",
        "seed": 1,
        "batch_size": 8,
        "augment": "on",
        "site_augment": ["jpeg", "defocus"],
        "promote": "best",
        "weights_dir": "",
        "max_per_class": "",
        "output_dir": "",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:training_trainingrun_add"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    run = TrainingRun.objects.get()
    assert queued == [run.pk]
    assert run.requested_by == admin_user and run.status == TrainingRun.Status.QUEUED
    assert run.options["architectures"] == ["convnet", "vgg19"] and run.options["promote"] == "best"
    assert run.options["epochs"] == 2 and run.options["augment"] is True and run.options["output_dir"] is None
    assert run.options["site_augment"] == ["defocus", "jpeg"]
    assert run.options["per_image_colour"] is False and run.options["learning_rate"] is None  # not posted: defaults
    assert admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).status_code == 200


def test_admin_training_form_rejects_bad_settings(admin_client, synthetic_data):
    form = {
        "data_dir": str(synthetic_data),
        "architectures": ["convnet"],
        "epochs": 0,
        "image_size": 64,
        "split_mode": "random",
        "seed": 1,
        "batch_size": 8,
        "promote": "",
    }
    response = admin_client.post(reverse("admin:training_trainingrun_add"), form)
    assert response.status_code == 200
    assert "epochs must be an integer" in response.content.decode()
    response = admin_client.post(
        reverse("admin:training_trainingrun_add"), {**form, "epochs": 2, "site_augment": ["fog"]}
    )
    assert response.status_code == 200 and "fog is not one of the available choices" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_admin_requeue_action(admin_client, tmp_path, monkeypatch):
    queued = []
    monkeypatch.setattr(retrain_task, "delay", lambda run_id: queued.append(run_id))
    run = make_run(tmp_path, tmp_path, status=TrainingRun.Status.FAILED, error="interrupted")
    admin_client.post(
        reverse("admin:training_trainingrun_changelist"),
        {"action": "requeue", "_selected_action": [run.pk]},
        follow=True,
    )
    run.refresh_from_db()
    assert queued == [run.pk] and run.status == TrainingRun.Status.QUEUED and run.error == ""


def test_services_queue_the_retrain_task_by_its_registered_name():
    from core.task_lookup import task_named
    from training.services import RETRAIN_TASK

    assert task_named(RETRAIN_TASK) is retrain_task._get_current_object()  # shared_task gives a Proxy


def test_admin_version_list_reads_no_training_record(admin_client, convnet_result):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    registry.register_model(convnet_result)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:training_modelversion_changelist"))
    assert response.status_code == 200 and "100.00%" in response.content.decode()  # accuracies from the record
    sql = [q["sql"] for q in queries.captured_queries]
    assert not any('"training_modelrecord"."split"' in s for s in sql), sql

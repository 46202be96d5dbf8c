import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction

from training import registry, services
from training.default_model import ensure_default_model
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def fake_version(name, active=False, **fields):
    values = dict(
        architecture="convnet",
        file_path=f"{name}/model.keras",
        sha256="0" * 64,
        class_names=["benign", "early_pre_b", "pre_b", "pro_b"],
        input_size=32,
        is_active=active,
    )
    values.update(fields)
    return ModelVersion.objects.create(name=name, **values)


def test_register_model_copies_files_and_records_facts(convnet_result, settings, world):
    version = registry.register_model(convnet_result, trained_by=world.lab_admin)

    path = registry.model_path(version)
    assert path == settings.MODEL_DIR / version.name / "model.keras"
    assert version.file_path == f"{version.name}/model.keras"  # relative to MODEL_DIR
    assert hashlib.sha256(path.read_bytes()).hexdigest() == version.sha256 == convnet_result["sha256"]
    assert version.architecture == "convnet" and version.input_size == 32
    assert version.class_names == ["benign", "early_pre_b", "pre_b", "pro_b"]
    assert version.record.metrics["val"]["accuracy"] == 1.0 and "test" in version.record.metrics
    assert version.record.metrics["training"]["epochs_run"] == 3
    assert version.val_accuracy == 1.0 and version.test_accuracy == 1.0
    assert set(version.record.plots) == {"training_curves", "confusion_matrix_val", "confusion_matrix_test"}
    for plot in version.record.plots.values():
        assert (settings.MODEL_DIR / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert plot.startswith(f"{version.name}/plots/")
    assert (settings.MODEL_DIR / version.name / "metadata.json").is_file()
    assert version.data_fingerprint == convnet_result["data_fingerprint"]
    assert version.record.split["mode"] == "random" and version.record.split["splits"]["test"]
    assert version.record.preprocessing["function"] == "ml.images.prepare_image"
    assert version.record.versions["keras"] and version.record.versions["backend"]
    assert version.git_commit == "" or len(version.git_commit) == 40
    assert version.trained_by == world.lab_admin and version.trained_at is not None
    assert not version.is_active
    # No temporary folders left behind.
    assert [p.name for p in settings.MODEL_DIR.iterdir()] == [version.name]


def test_registering_the_same_file_twice_returns_the_existing_version(convnet_result):
    first = registry.register_model(convnet_result)
    again = registry.register_model(convnet_result)
    assert again.pk == first.pk
    assert ModelVersion.objects.count() == 1


def test_register_refuses_a_file_that_does_not_match_its_training_metadata(convnet_result):
    with open(convnet_result["model_path"], "ab") as handle:
        handle.write(b"x")
    with pytest.raises(registry.ModelIntegrityError, match="not registering"):
        registry.register_model(convnet_result)
    assert not ModelVersion.objects.exists()


def test_load_model_verifies_and_predicts(convnet_result):
    version = registry.register_model(convnet_result)
    model = registry.load_model(version)
    probabilities = np.asarray(model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0))
    assert probabilities.shape == (1, 4)


def test_load_model_refuses_a_tampered_file(convnet_result):
    version = registry.register_model(convnet_result)
    path = registry.model_path(version)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(registry.ModelIntegrityError) as excinfo:
        registry.load_model(version)
    assert version.name in str(excinfo.value)
    assert "sha256" in str(excinfo.value)
    with pytest.raises(registry.ModelIntegrityError, match=version.name):
        registry.activate(version)  # promotion checks the file too
    assert not ModelVersion.objects.get(pk=version.pk).is_active


def test_load_model_reports_a_missing_file(convnet_result):
    version = registry.register_model(convnet_result)
    registry.model_path(version).unlink()
    with pytest.raises(registry.ModelFileMissing, match=version.name):
        registry.load_model(version)


def test_require_active_version(convnet_result):
    with pytest.raises(registry.NoActiveModel):
        registry.require_active_version()
    version = registry.register_model(convnet_result)
    registry.activate(version)
    active = registry.require_active_version()
    assert active == version and registry.load_model(active).output_shape == (None, 4)


def test_get_version_by_name_or_id():
    version = fake_version("convnet-a")
    assert registry.get_version("convnet-a") == version
    assert registry.get_version(str(version.pk)) == version
    assert registry.get_version(version.pk) == version
    with pytest.raises(registry.UnknownModelVersion, match="nope"):
        registry.get_version("nope")


def test_activate_is_exclusive():
    a, b, c = fake_version("a"), fake_version("b"), fake_version("c")
    a.activate()
    assert list(ModelVersion.objects.filter(is_active=True)) == [a]
    b.activate()
    c.activate()
    assert list(ModelVersion.objects.filter(is_active=True)) == [c]
    c.activate()  # idempotent
    assert ModelVersion.active() == c
    b.refresh_from_db()
    assert not b.is_active


def test_database_forbids_two_active_versions():
    fake_version("a", active=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        fake_version("b", active=True)


def test_activate_rolls_back_as_a_whole(monkeypatch):
    from django.db.models.query import QuerySet

    a, b = fake_version("a", active=True), fake_version("b")
    original_update = QuerySet.update
    calls = []

    def failing_update(self, **kwargs):
        calls.append(kwargs)
        if kwargs == {"is_active": True}:
            raise RuntimeError("crash between the two updates")
        return original_update(self, **kwargs)

    monkeypatch.setattr(QuerySet, "update", failing_update)
    with pytest.raises(RuntimeError):
        b.activate()
    monkeypatch.undo()
    assert calls == [{"is_active": False}, {"is_active": True}]
    assert ModelVersion.active() == a  # the deactivation was rolled back too


@pytest.mark.django_db(transaction=True)
def test_concurrent_activations_leave_exactly_one_active():
    versions = [fake_version(f"v{i}") for i in range(4)]
    errors = []

    def worker(version):
        try:
            for _ in range(8):
                ModelVersion.objects.get(pk=version.pk).activate()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert ModelVersion.objects.filter(is_active=True).count() == 1


def test_shipped_default_model_is_registered_in_place_and_activated(trained_output, settings):
    import shutil

    shutil.copytree(trained_output / "convnet", settings.SHIPPED_MODEL_DIR / "convnet")
    versions = ensure_default_model()
    assert len(versions) == 1
    version = versions[0]
    assert version.file_path == str((settings.SHIPPED_MODEL_DIR / "convnet" / "model.keras").resolve())
    assert version.is_active or ModelVersion.active() == version
    assert not settings.MODEL_DIR.exists() or not any(settings.MODEL_DIR.iterdir())  # not copied
    assert registry.load_model(version).output_shape == (None, 4)
    assert ensure_default_model()[0].pk == version.pk  # idempotent
    assert ModelVersion.objects.count() == 1


def test_diagnose_prepares_like_serving(convnet_result, tmp_path):
    from PIL import Image

    version = registry.register_model(convnet_result)
    version.smear_check = {}  # flat colours are no smears; this test is about the preprocessing
    Image.new("RGB", (60, 30), (40, 40, 220)).save(tmp_path / "wide.png")  # not square: padded like serving
    Image.new("RGB", (32, 32), (220, 40, 40)).save(tmp_path / "red.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = {Path(row["path"]).name: row for row in services.diagnose_paths([tmp_path], version)}
    assert rows["red.png"]["label"] == "benign"
    assert sum(rows["wide.png"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert rows["broken.png"]["label"] is None and rows["broken.png"]["error"]


def test_admin_bulk_delete_keeps_the_active_version(admin_client):
    from django.urls import reverse

    active, other = fake_version("keep", active=True), fake_version("drop")
    url = reverse("admin:training_modelversion_changelist")
    response = admin_client.post(
        url, {"action": "delete_selected", "_selected_action": [active.pk, other.pk], "post": "yes"}
    )
    assert response.status_code == 403  # the active version cannot be deleted, alone or in bulk
    assert ModelVersion.objects.count() == 2
    admin_client.post(url, {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"})
    assert list(ModelVersion.objects.all()) == [active]


def test_register_default_model_command(trained_output, settings):
    import io
    import shutil

    from django.core.management import call_command

    out = io.StringIO()
    call_command("register_default_model", stdout=out)
    assert "No shipped model found" in out.getvalue()

    shutil.copytree(trained_output / "convnet_bn", settings.SHIPPED_MODEL_DIR)
    out = io.StringIO()
    call_command("register_default_model", stdout=out)
    version = ModelVersion.objects.get()
    assert version.name == "default-convnet_bn" and version.is_active
    assert "(active)" in out.getvalue()


def test_ship_model_writes_the_default_a_fresh_install_registers(convnet_result, settings):
    import io
    import shutil

    from django.core.management import CommandError, call_command

    from ml import artifacts
    from research import shipping

    version = registry.register_model(convnet_result)
    stale = settings.SHIPPED_MODEL_DIR / "old-default"
    stale.mkdir(parents=True)
    (stale / "metadata.json").write_text("{}")
    out = io.StringIO()
    call_command(
        "ship_model", version.name, "--folder", "default", "--name", "default-convnet", "--replace", stdout=out
    )
    folder = settings.SHIPPED_MODEL_DIR / "default"
    assert "Shipped" in out.getvalue() and not stale.exists()  # one default model only
    metadata = artifacts.read_json(folder / "metadata.json")
    assert metadata["version_name"] == "default-convnet" and metadata["split"] == version.record.split
    assert metadata["sha256"] == artifacts.sha256_file(folder / "model.keras")
    assert metadata["shipped_from"] == {
        "version": version.name,
        "run_model_sha256": version.sha256,
        "note": "same weights, saved without optimizer state",
    }
    assert all((folder / rel).is_file() for rel in metadata["plots"].values())

    # A fresh install: nothing registered, the shipped folder becomes the active model.
    ModelVersion.objects.all().delete()
    shutil.rmtree(settings.MODEL_DIR)
    (fresh,) = ensure_default_model()
    assert fresh.name == "default-convnet" and ModelVersion.active() == fresh
    batch = np.zeros((1, fresh.input_size, fresh.input_size, 3), "float32")
    reloaded = registry.load_model(fresh)
    assert getattr(reloaded, "optimizer", None) is None  # the serving copy carries no optimizer state
    assert reloaded.predict_on_batch(batch).shape == (1, 4)

    with pytest.raises(shipping.ShippingError, match="at most"):
        shipping.ship_version(fresh, "too-big", max_bytes=1000)
    assert not (settings.SHIPPED_MODEL_DIR / "too-big").exists()
    with pytest.raises(CommandError, match="No model version"):
        call_command("ship_model", "nope")


def test_registered_version_records_the_configured_commit(convnet_result, settings):
    settings.GIT_COMMIT = "a" * 40  # TELEDIAG_GIT_COMMIT, for checkouts without .git
    assert registry.register_model(convnet_result).git_commit == "a" * 40

"""The worker's serving path: the verified TFLite export, one forward pass, few queries, fallbacks."""

import io

import numpy as np
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from inference import services
from inference.models import AnalysisJob, Prediction
from inference.tasks import analyse_smear
from ml.classes import CLASS_NAMES
from tests.conftest import smear_upload
from tests.inference.conftest import register_version


def _keras_probabilities(version, smear):
    from ml import artifacts
    from ml.images import prepare_image

    model = artifacts.load_model_verified(version.file_path, version.sha256)
    with smear.image.open("rb") as handle:
        image = prepare_image(handle.read(), version.input_size)
    return dict(zip(CLASS_NAMES, model.predict_on_batch(image[None].astype("float32"))[0]))


def test_prediction_comes_from_the_verified_export_and_equals_keras(world, model_version):
    case = world.submit_case(files=[smear_upload("a.png", size=(70, 50), colour=(150, 80, 170))])
    job = AnalysisJob.objects.get(smear__case=case)
    assert analyse_smear(job.pk) == "done"
    prediction = Prediction.objects.get(job=job)
    assert prediction.runtime == "tflite"
    assert prediction.heatmap_method == "grad-cam" and prediction.heatmap
    expected = _keras_probabilities(model_version, job.smear)
    assert max(abs(prediction.probabilities[name] - float(p)) for name, p in expected.items()) < 1e-4
    assert prediction.label == max(expected, key=expected.get)


def test_keras_runtime_when_asked_gives_the_same_result(world, model_version, settings, fresh_model_cache):
    settings.INFERENCE_RUNTIME = "keras"
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    assert analyse_smear(job.pk) == "done"
    prediction = Prediction.objects.get(job=job)
    assert prediction.runtime == "keras" and prediction.heatmap_method == "grad-cam"
    expected = _keras_probabilities(model_version, job.smear)
    assert max(abs(prediction.probabilities[name] - float(p)) for name, p in expected.items()) < 1e-4


def test_per_task_queries_are_few(world, model_version):
    """Claim with the job's rows (1), case → analysing once (1: no read-back), Prediction + job done
    (1 + the test's savepoint pair), case → awaiting review unless a job is pending (1). Databases
    other than PostgreSQL claim in 2 statements and store in 2 (inference.claims, inference.results)."""
    one_statement = connection.vendor == "postgresql"
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png", colour=(20, 90, 200))])
    first, second = AnalysisJob.objects.filter(smear__case=case).order_by("pk")
    analyse_smear(first.pk)  # loads the model
    other_case = world.submit_case(files=[smear_upload("c.png"), smear_upload("d.png", colour=(90, 20, 60))])
    third, fourth = AnalysisJob.objects.filter(smear__case=other_case).order_by("pk")
    for job in (third, fourth, second):
        with CaptureQueriesContext(connection) as queries:
            assert analyse_smear(job.pk) == "done"
        sql = [q["sql"] for q in queries.captured_queries]
        assert len(sql) <= (6 if job == third else 5) + (0 if one_statement else 2), "\n".join(sql)
        assert not any(s.startswith("SELECT") and "inference_prediction" in s.split("WHERE")[0] for s in sql)
        assert not any(s.startswith("UPDATE") and "inference_prediction" in s for s in sql)
        assert sum('INSERT INTO "inference_prediction"' in s for s in sql) == 1
        assert not any('"training_modelversion"."split"' in s for s in sql)  # the training record stays unread
    other_case.refresh_from_db()
    case.refresh_from_db()
    assert other_case.status == case.status == "awaiting_review"


def test_a_duplicate_run_keeps_the_stored_prediction_and_leaves_no_stray_file(world, model_version, settings):
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    existing = Prediction.objects.create(
        smear=job.smear,
        model_version=model_version,
        job=job,
        label=CLASS_NAMES[0],
        probabilities={name: 0.25 for name in CLASS_NAMES},
    )
    assert analyse_smear(job.pk) == "done"
    job.refresh_from_db()
    assert job.status == "done"
    assert list(Prediction.objects.filter(smear=job.smear)) == [existing]
    heatmaps = (
        list((settings.MEDIA_ROOT / "heatmaps").rglob("*.png")) if (settings.MEDIA_ROOT / "heatmaps").exists() else []
    )
    assert heatmaps == []  # the file written for the losing run was removed


def test_model_without_a_feature_map_gets_an_occlusion_heatmap(world, tmp_path):
    import keras

    from ml import artifacts

    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="predictions")(x)
    sha256 = artifacts.save_model_atomically(keras.Model(inputs, outputs), tmp_path / "flat.keras")
    version = register_version(tmp_path / "flat.keras", sha256, name="flat", input_size=16, architecture="flat")
    case = world.submit_case(files=[smear_upload("wide.png", size=(60, 30))])
    job = AnalysisJob.objects.get(smear__case=case, model_version=version)
    assert analyse_smear(job.pk) == "done"
    prediction = Prediction.objects.get(job=job)
    assert prediction.heatmap_method == "occlusion" and prediction.runtime == "tflite"
    with prediction.heatmap.open("rb") as handle:
        assert Image.open(io.BytesIO(handle.read())).size == (60, 30)


def test_broker_connection_is_reused_and_dropped_after_a_failure(
    world, model_version, published, monkeypatch, django_capture_on_commit_callbacks, settings
):
    from kombu.exceptions import OperationalError

    from inference.tasks import analyse_smear as task

    settings.BROKER_PUBLISH_BACKOFF_S = 0  # the connection, not the back-off (test_reliability), is tested here
    services._broker.drop()
    opened = []
    original = task.app.connection_for_write
    monkeypatch.setattr(task.app, "connection_for_write", lambda *a, **k: opened.append(1) or original(*a, **k))
    with django_capture_on_commit_callbacks(execute=True):
        world.submit_case()
    with django_capture_on_commit_callbacks(execute=True):
        world.submit_case(files=[smear_upload("x.png"), smear_upload("y.png")])
    assert len(published.job_ids()) == 3 and len(published) == 2  # the two-smear case in one message
    assert len(opened) == 1  # one connection for both publishes

    published.fail_with = OperationalError("Connection refused.")
    with django_capture_on_commit_callbacks(execute=True):
        world.submit_case()
    published.fail_with = None
    with django_capture_on_commit_callbacks(execute=True):
        world.submit_case()
    assert len(opened) == 2  # the failed connection was not reused
    assert AnalysisJob.objects.filter(published_at__isnull=False).count() == 4
    assert AnalysisJob.objects.exclude(last_enqueue_error="").count() == 1
    services._broker.drop()


def test_heatmap_png_is_small_and_fast_to_write():
    from ml.heatmaps import overlay_png

    png = overlay_png(np.random.default_rng(1).random((7, 7)), 224, (224, 224))
    image = Image.open(io.BytesIO(png))
    assert image.size == (128, 128) and image.mode == "RGBA"  # at most OVERLAY_MAX_SIDE; the browser stretches it
    wide = Image.open(io.BytesIO(overlay_png(np.random.default_rng(2).random((7, 7)), 224, (1000, 500))))
    assert wide.size == (128, 64)  # the upload's aspect ratio, at most OVERLAY_MAX_SIDE
    assert len(png) < 100_000

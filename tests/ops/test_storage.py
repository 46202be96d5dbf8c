"""S3 storage against a real S3-compatible server process (moto in server mode): uploads, heatmaps
and model files in a private bucket, read back only through the app by authorised users, model
files downloaded by a real worker and verified by sha256."""

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.inference.conftest import model_file  # noqa: F401 - the session's small Keras model
from tests.inference.test_integration import case_finished, submit, wait_for
from tests.ops.conftest import S3_BUCKET

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def anonymous_status(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def register(model_file, name):  # noqa: F811
    from training import registry

    path, sha256 = model_file
    version = registry.register_model(
        {"model_path": str(path), "sha256": sha256, "architecture": "convnet_bn", "input_size": 32},
        name=name,
    )
    return registry.activate(version)


@pytest.fixture
def s3_settings(settings, s3_server, tmp_path):
    settings.STORAGES = s3_server.storages(settings.STORAGES)
    settings.MODEL_DIR = tmp_path / "web-models"
    return s3_server


def test_case_images_heatmaps_and_models_live_in_a_private_bucket(
    client,
    world,
    postgres,
    redis_url,
    s3_settings,
    start_worker,
    model_file,  # noqa: F811 - the fixture, imported above
    tmp_path,
    settings,
):
    from inference.models import Prediction
    from telediag.celery import app

    s3 = s3_settings
    bucket = s3.client()
    version = register(model_file, "s3-model")
    model_key = f"models/{version.file_path}"
    stored = bucket.get_object(Bucket=S3_BUCKET, Key=model_key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == version.sha256

    # The worker has its own, empty model folder: it downloads the file and checks its sha256.
    worker_models = tmp_path / "worker-models"
    worker = start_worker(broker_url=redis_url, TELEDIAG_MODEL_DIR=str(worker_models), **s3.env)
    saved = app.conf.broker_url
    app.conf.broker_url = redis_url
    try:
        case = submit(client, world, count=1)
        wait_for(case_finished(case), "the case to be analysed with files in S3", worker)
    finally:
        app.conf.broker_url = saved
    assert "downloaded from the model store and verified" in worker.output()
    local = worker_models / version.file_path
    assert hashlib.sha256(local.read_bytes()).hexdigest() == version.sha256

    smear = case.smears.get()
    prediction = Prediction.objects.get(smear=smear)
    assert prediction.heatmap.name.startswith("heatmaps/")
    image_bytes = bucket.get_object(Bucket=S3_BUCKET, Key=smear.image.name)["Body"].read()
    heatmap_bytes = bucket.get_object(Bucket=S3_BUCKET, Key=prediction.heatmap.name)["Body"].read()
    assert image_bytes and heatmap_bytes.startswith(b"\x89PNG")

    # Read back through the app, by the people allowed to see the case; nobody else.
    for path, expected in (
        (f"/smears/{smear.pk}/image/", image_bytes),
        (f"/api/smears/{smear.pk}/image/", image_bytes),
        (f"/analysis/predictions/{prediction.pk}/heatmap.png", heatmap_bytes),
    ):
        for user in (world.clinician, world.pathologist):
            client.force_login(user)
            response = client.get(path)
            assert response.status_code == 200, (path, user)
            assert b"".join(response.streaming_content) == expected
        client.force_login(world.outsider)
        assert client.get(path).status_code in (403, 404)
        client.logout()
        assert client.get(path).status_code in (302, 401, 403)

    # The bucket is private: anonymous GETs are refused; signed URLs expire after 300 s.
    for key in (smear.image.name, prediction.heatmap.name, model_key):
        assert anonymous_status(f"{s3.endpoint}/{S3_BUCKET}/{key}") == 403
    signed = smear.image.storage.url(smear.image.name)
    assert "X-Amz-Expires=300" in signed
    with urllib.request.urlopen(signed, timeout=10) as response:
        assert response.read() == image_bytes


def test_a_model_file_altered_in_the_bucket_is_refused_by_the_worker(
    postgres,
    s3_settings,
    model_file,  # noqa: F811 - the fixture, imported above
    tmp_path,
    settings,
):
    from training import model_store, registry

    version = register(model_file, "s3-tampered")
    s3_settings.client().put_object(Bucket=S3_BUCKET, Key=f"models/{version.file_path}", Body=b"not the model")
    settings.MODEL_DIR = tmp_path / "other-node"  # a node that has not downloaded it yet
    assert model_store.is_available(version)
    with pytest.raises(registry.ModelIntegrityError, match="sha256"):
        registry.verify_file(version)
    folder = Path(settings.MODEL_DIR) / version.file_path
    assert not folder.exists() and not list(folder.parent.glob("*"))  # nothing half-downloaded is left

    s3_settings.client().delete_object(Bucket=S3_BUCKET, Key=f"models/{version.file_path}")
    with pytest.raises(registry.ModelFileMissing):
        registry.load_model(version)


def test_model_reports_are_copied_to_the_bucket(postgres, s3_settings, tmp_path):
    from training import model_store

    folder = tmp_path / "v1-20261205-220000"
    folder.mkdir()
    (folder / "report.json").write_text('{"accuracy": 0.95}')
    (folder / "report.txt").write_text("accuracy 95 %\n")
    keys = model_store.publish_report(folder)
    assert keys == ["reports/v1-20261205-220000/report.json", "reports/v1-20261205-220000/report.txt"]
    body = s3_settings.client().get_object(Bucket=S3_BUCKET, Key=keys[1])["Body"].read()
    assert body == b"accuracy 95 %\n"
    assert anonymous_status(f"{s3_settings.endpoint}/{S3_BUCKET}/{keys[0]}") == 403

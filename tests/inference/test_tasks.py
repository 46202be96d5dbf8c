"""Unit tests of the analysis flow: task functions called directly, a small real Keras model."""

import io
import sys

import pytest
from django.utils import timezone
from PIL import Image

from cases.models import Case
from inference import services
from inference.models import AnalysisJob, Prediction
from inference.tasks import analyse_smear, analyse_smears
from ml.classes import CLASS_NAMES
from tests.conftest import smear_upload
from tests.inference.conftest import register_version
from training.models import ModelRecord, ModelVersion


def two_smears():
    return [smear_upload("a.png", colour=(180, 60, 120)), smear_upload("b.png", size=(40, 70), colour=(90, 90, 200))]


def test_submission_publishes_one_message_of_its_job_ids_after_commit(
    world, model_version, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        case = world.submit_case(files=two_smears())
        jobs = list(AnalysisJob.objects.filter(smear__case=case).order_by("pk"))
        assert [job.status for job in jobs] == ["queued", "queued"]
        assert published == []  # nothing leaves before the transaction commits
    for callback in callbacks:
        callback()
    [(message, options)] = published  # the case's smears in one message: one hand-off, one claim
    assert message == [job.pk for job in jobs]  # ids only, never image bytes
    assert options["queue"] == "inference"
    assert all(job.model_version == model_version for job in jobs)
    # The jobs know their message: the sweeper counts messages, not jobs, against the broker's queue.
    assert {job.published_message_id for job in AnalysisJob.objects.all()} == {options["task_id"]}
    assert AnalysisJob.objects.filter(published_at__isnull=False, publish_count=1).count() == 2


def test_rolled_back_submission_publishes_nothing(world, model_version, published, django_capture_on_commit_callbacks):
    from core.errors import DomainError

    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(DomainError):
            world.submit_case(
                files=[smear_upload("a.png"), smear_upload("bad.png", fmt="GIF", content_type="image/gif")]
            )
    assert published == []
    assert not AnalysisJob.objects.exists()


def test_a_case_s_message_claims_its_smears_together_and_moves_the_case_once(world, model_version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core import log_context

    one_by_one, together = (world.submit_case(files=two_smears()) for _ in range(2))
    with CaptureQueriesContext(connection) as separately:
        for job in AnalysisJob.objects.filter(smear__case=one_by_one).order_by("pk"):
            assert analyse_smear(job.pk) == "done"
    jobs = list(AnalysisJob.objects.filter(smear__case=together).order_by("pk"))
    with CaptureQueriesContext(connection) as in_one:
        assert analyse_smears([job.pk for job in jobs]) == {job.pk: "done" for job in jobs}
    assert log_context.case_id.get() == str(together.pk)  # its log lines name the case
    # One claim, one move to analysing, one to awaiting review, one INSERT of both results.
    assert len(in_one) <= len(separately) - 4, [q["sql"][:60] for q in in_one]
    together.refresh_from_db()
    assert together.status == Case.Status.AWAITING_REVIEW
    for job in jobs:
        job.refresh_from_db()
        assert job.status == "done" and job.attempts == 1
        assert Prediction.objects.get(smear=job.smear).label in CLASS_NAMES
    assert analyse_smears([job.pk for job in jobs]) == {job.pk: "skipped" for job in jobs}  # a duplicate


def test_task_stores_prediction_heatmap_and_moves_the_case(world, model_version):
    case = world.submit_case(files=two_smears())
    first, second = AnalysisJob.objects.filter(smear__case=case).order_by("pk")

    assert analyse_smear(first.pk) == "done"
    case.refresh_from_db()
    assert case.status == Case.Status.ANALYSING  # one image still to go
    assert analyse_smear(second.pk) == "done"
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW

    for job in (first, second):
        job.refresh_from_db()
        assert job.status == "done" and job.attempts == 1 and job.finished_at and job.started_at
        prediction = Prediction.objects.get(smear=job.smear, model_version=model_version)
        assert set(prediction.probabilities) == set(CLASS_NAMES)  # (jsonb does not keep key order)
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert max(prediction.probabilities.values()) > 0.5  # not uniform
        assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.get)
        assert prediction.inference_ms is not None and prediction.queue_wait_ms is not None
        assert prediction.heatmap_method == "grad-cam"
        with prediction.heatmap.open("rb") as handle:
            heatmap = Image.open(io.BytesIO(handle.read()))
        assert heatmap.format == "PNG" and heatmap.mode == "RGBA"
        # Laid over the displayed image: same aspect ratio as the smear (padding cropped away).
        assert heatmap.size == (job.smear.width, job.smear.height)


def test_inference_uses_the_shared_preprocessing(world, model_version, monkeypatch):
    import ml.images as images

    calls = []
    decode, prepare = images.decode_image, images.prepare_decoded

    def decode_spy(source):
        calls.append("decode")
        return decode(source)

    def prepare_spy(image, size, source=None):
        calls.append(size)
        return prepare(image, size, source)

    monkeypatch.setattr(images, "decode_image", decode_spy)
    monkeypatch.setattr(images, "prepare_decoded", prepare_spy)
    monkeypatch.setattr(images, "prepare_image", lambda *args: pytest.fail("decoded a second time"))
    case = world.submit_case()
    analyse_smear(AnalysisJob.objects.get(smear__case=case).pk)
    assert calls == ["decode", model_version.input_size]  # no smear check stored: the model's size only


def test_model_is_loaded_once_per_process(world, model_version, monkeypatch, fresh_model_cache):
    from training import registry

    loads = []
    original = registry.load_model
    monkeypatch.setattr(registry, "load_model", lambda version: loads.append(version.pk) or original(version))
    case = world.submit_case(files=two_smears())
    for job in AnalysisJob.objects.filter(smear__case=case):
        analyse_smear(job.pk)
    assert loads == [model_version.pk]


def test_redelivered_or_duplicate_message_is_a_no_op(world, model_version):
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    assert analyse_smear.apply(args=[job.pk], task_id="message-1").get() == "done"
    # The same message again (redelivery) and a sweeper duplicate: nothing happens.
    assert analyse_smear.apply(args=[job.pk], task_id="message-1").get() == "skipped"
    assert analyse_smear.apply(args=[job.pk], task_id="message-2").get() == "skipped"
    job.refresh_from_db()
    assert job.status == "done" and job.attempts == 1
    assert Prediction.objects.filter(smear=job.smear).count() == 1


def test_a_second_worker_never_runs_a_job_another_one_holds(world, model_version):
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    AnalysisJob.objects.filter(pk=job.pk).update(
        status="running", task_id="message-1", attempts=1, started_at=timezone.now()
    )
    assert analyse_smear.apply(args=[job.pk], task_id="message-2").get() == "skipped"
    job.refresh_from_db()
    assert job.status == "running" and job.attempts == 1
    assert not Prediction.objects.exists()


def test_message_back_after_its_worker_died_takes_the_job_over(world, model_version):
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    # A worker claimed it with this message, then was killed: the broker delivers the message again.
    AnalysisJob.objects.filter(pk=job.pk).update(
        status="running", task_id="message-1", attempts=1, started_at=timezone.now()
    )
    assert analyse_smear.apply(args=[job.pk], task_id="message-1").get() == "done"
    job.refresh_from_db()
    assert job.status == "done" and job.attempts == 2
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW


def test_a_task_that_keeps_killing_its_worker_ends_failed_after_max_attempts(world, model_version, settings):
    settings.INFERENCE_MAX_ATTEMPTS = 3
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    AnalysisJob.objects.filter(pk=job.pk).update(
        status="running", task_id="message-1", attempts=3, started_at=timezone.now()
    )
    assert analyse_smear.apply(args=[job.pk], task_id="message-1").get() == "skipped"
    job.refresh_from_db()
    assert job.status == "failed"
    assert "3 times" in job.reason and "gave up after 3 attempts" in job.reason
    assert not Prediction.objects.exists()
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW  # reviewable without the AI


def test_missing_model_file_fails_the_job_with_the_reason(world, tmp_path):
    version = register_version(tmp_path / "gone.keras", "0" * 64, name="gone")
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case, model_version=version)
    assert analyse_smear(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and "missing" in job.reason and "gone" in job.reason


def test_altered_model_file_is_refused(world, model_file, tmp_path):
    path, sha256 = model_file
    altered = tmp_path / "altered.keras"
    altered.write_bytes(path.read_bytes() + b"tampered")
    version = register_version(altered, sha256, name="altered")
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case, model_version=version)
    assert analyse_smear(job.pk) == "failed"
    job.refresh_from_db()
    assert "sha256" in job.reason


def test_corrupt_model_file_fails_its_jobs_and_other_work_continues(world, model_file, tmp_path):
    import hashlib

    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 this is not a keras archive")
    bad = register_version(corrupt, hashlib.sha256(corrupt.read_bytes()).hexdigest(), name="corrupt")
    bad_case = world.submit_case()
    bad_job = AnalysisJob.objects.get(smear__case=bad_case)
    assert analyse_smear(bad_job.pk) == "failed"
    bad_job.refresh_from_db()
    assert "corrupt" in bad_job.reason and "cannot be loaded" in bad_job.reason
    bad_case.refresh_from_db()
    assert bad_case.status == Case.Status.AWAITING_REVIEW

    path, sha256 = model_file
    good = register_version(path, sha256, name="good")  # activated
    good_case = world.submit_case()
    good_job = AnalysisJob.objects.get(smear__case=good_case)
    assert good_job.model_version == good
    assert analyse_smear(good_job.pk) == "done"
    assert ModelVersion.active() == good and bad.pk != good.pk


def test_unreadable_image_fails_only_that_job(world, model_version):
    case = world.submit_case(files=two_smears())
    first, second = AnalysisJob.objects.filter(smear__case=case).order_by("pk")
    first.smear.image.storage.delete(first.smear.image.name)
    assert analyse_smear(first.pk) == "failed"
    assert analyse_smear(second.pk) == "done"
    first.refresh_from_db()
    assert "cannot be read" in first.reason
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW


def test_soft_time_limit_fails_the_job_with_a_reason(world, model_version, monkeypatch, settings):
    from celery.exceptions import SoftTimeLimitExceeded

    from inference import worker

    settings.CELERY_TASK_SOFT_TIME_LIMIT = 240

    def too_slow(job):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(worker, "analyse", too_slow)
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    assert analyse_smear(job.pk) == "failed"
    job.refresh_from_db()
    assert "240 s" in job.reason


def test_chosen_model_version_is_used(world, model_file):
    path, sha256 = model_file
    register_version(path, sha256, name="active-one")
    chosen = register_version(path, sha256, name="chosen-one", active=False)
    case = world.submit_case(model_version=chosen)
    assert set(AnalysisJob.objects.filter(smear__case=case).values_list("model_version__name", flat=True)) == {
        "chosen-one"
    }


def test_no_active_model_case_waits_then_sweeper_starts_it(
    world, model_file, published, run_jobs, django_capture_on_commit_callbacks
):
    from cases.services import case_sign
    from inference.status import case_analysis_data

    case = world.submit_case(files=two_smears())  # submission works without a model
    assert not AnalysisJob.objects.exists()
    data = case_analysis_data(case, world.pathologist)
    assert data["state"] == "waiting_for_model" and "Waiting for a model" in data["message"]
    assert all(smear["job"] is None for smear in data["smears"])
    assert services.sweep(requeue_after_s=0)["waiting_cases_started"] == 0

    path, sha256 = model_file
    register_version(path, sha256)  # a model becomes active; the sweeper (beat, every minute) runs
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sweep()["waiting_cases_started"] == 1
    assert len(published.job_ids()) == 2
    assert run_jobs() == ["done", "done"]
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW
    assert services.sweep()["waiting_cases_started"] == 0

    # Pathologists can sign without the AI too (here: another case, still without a model run).
    other = world.submit_case()
    AnalysisJob.objects.filter(smear__case=other).delete()
    case_sign(signature_method="password", user=world.pathologist, case=other, diagnosis="benign")
    other.refresh_from_db()
    assert other.status == Case.Status.SIGNED


def test_broker_down_at_submission_keeps_case_and_jobs_then_sweeper_publishes(
    world, model_version, published, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    published.fail_with = OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    with django_capture_on_commit_callbacks(execute=True):
        case = world.submit_case(files=two_smears())  # must not raise
    assert Case.objects.filter(pk=case.pk).exists()
    jobs = AnalysisJob.objects.filter(smear__case=case)
    assert [job.status for job in jobs] == ["queued", "queued"]
    assert all("Connection refused" in job.last_enqueue_error for job in jobs)
    assert all(job.published_at is None for job in jobs)
    from inference.status import case_analysis_data

    texts = [smear["job"]["status_text"] for smear in case_analysis_data(case)["smears"]]
    assert all(text.startswith("queued (waiting") and "unreachable" in text for text in texts)

    published.fail_with = None  # the broker is back
    counts = services.sweep()
    assert counts["republished"] == 2
    jobs = AnalysisJob.objects.filter(smear__case=case)
    assert all(job.last_enqueue_error == "" and job.published_at for job in jobs)


def test_sweeper_republishes_only_jobs_queued_too_long(world, model_version, published, settings):
    settings.INFERENCE_REQUEUE_AFTER_S = 120
    case = world.submit_case(files=two_smears())
    old, fresh = AnalysisJob.objects.filter(smear__case=case).order_by("pk")
    now = timezone.now()
    AnalysisJob.objects.filter(pk=old.pk).update(
        enqueued_at=now - timezone.timedelta(minutes=5), published_at=now - timezone.timedelta(minutes=5)
    )
    AnalysisJob.objects.filter(pk=fresh.pk).update(published_at=now)
    assert services.sweep()["republished"] == 1
    assert published.job_ids() == [old.pk]


def test_sweeper_recovers_jobs_abandoned_in_running_state(world, model_version, published, settings):
    settings.INFERENCE_MAX_ATTEMPTS = 3
    case = world.submit_case(files=two_smears())
    retryable, exhausted = AnalysisJob.objects.filter(smear__case=case).order_by("pk")
    long_ago = timezone.now() - timezone.timedelta(seconds=services.stale_running_after_s() + 5)
    AnalysisJob.objects.filter(pk=retryable.pk).update(status="running", attempts=1, started_at=long_ago, task_id="m1")
    AnalysisJob.objects.filter(pk=exhausted.pk).update(status="running", attempts=3, started_at=long_ago, task_id="m2")
    counts = services.sweep()
    assert counts["recovered"] == 1 and counts["failed_abandoned"] == 1
    retryable.refresh_from_db()
    exhausted.refresh_from_db()
    assert retryable.status == "queued" and published.job_ids() == [retryable.pk]
    assert exhausted.status == "failed" and "giving up" in exhausted.reason


def test_retry_of_failed_job_and_rerun_with_another_version(
    world, model_file, published, run_jobs, tmp_path, django_capture_on_commit_callbacks
):
    from core.errors import InvalidTransition, NotAllowed

    path, sha256 = model_file
    broken = register_version(tmp_path / "missing.keras", sha256, name="broken")
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    assert analyse_smear(job.pk) == "failed"
    job.refresh_from_db()

    with pytest.raises(NotAllowed):
        services.job_retry(user=world.clinician, job=job)
    with pytest.raises(NotAllowed):
        services.job_retry(user=world.other_pathologist, job=job)

    # The file is put back; a lab admin retries.
    path_bytes = path.read_bytes()
    (tmp_path / "missing.keras").write_bytes(path_bytes)
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.job_retry(user=world.lab_admin, job=job)
    job.refresh_from_db()
    assert job.status == "queued" and job.attempts == 0 and job.reason == ""
    assert run_jobs() == ["done"]
    with pytest.raises(InvalidTransition):
        services.job_retry(user=world.pathologist, job=job)

    other = register_version(path, sha256, name="other", active=False)
    with pytest.raises(NotAllowed):
        services.case_rerun(user=world.clinician, case=case, model_version=other)
    with pytest.raises(NotAllowed):
        services.case_rerun(user=world.lab_admin, case=case, model_version=other)
    with django_capture_on_commit_callbacks(execute=True):
        jobs = services.case_rerun(user=world.pathologist, case=case, model_version=other)
    assert [j.model_version for j in jobs] == [other]
    assert run_jobs() == ["done"]
    assert Prediction.objects.filter(smear__case=case).count() == 2
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW
    assert broken.name == "broken"


def test_importing_the_tasks_does_not_import_tensorflow():
    """The prefork parent imports the tasks: TensorFlow must load only inside the children."""
    import subprocess

    code = (
        "import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'telediag.settings_test'); "
        "django.setup(); import inference.tasks, inference.services, inference.worker, inference.views; "
        "bad = [m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_heatmap_overlay_geometry_matches_prepare_image_padding():
    import numpy as np

    from ml.heatmaps import content_box, overlay_png
    from ml.images import prepare_image

    image = np.zeros((30, 90, 3), dtype=np.uint8)
    image[:] = 200
    prepared = prepare_image(image, 32)
    left, top, width, height = content_box((90, 30), 32)
    inside = prepared[top : top + height, left : left + width]
    assert (inside > 0).all()  # the box is exactly the non-padded region
    assert (prepared[:top] == 0).all() and (prepared[top + height :] == 0).all()
    png = overlay_png(np.random.default_rng(0).random((4, 4)), 32, (90, 30))
    assert Image.open(io.BytesIO(png)).size == (90, 30)


def test_another_model_build_serves_too(tmp_path, world):
    """A model without BatchNormalization (the study's convnet) also gets a Grad-CAM heatmap."""
    from ml import artifacts
    from ml.architectures import build_model

    model = build_model("convnet", image_size=16, num_classes=len(CLASS_NAMES), augment=False, seed=3)
    sha256 = artifacts.save_model_atomically(model, tmp_path / "convnet.keras")
    version = register_version(tmp_path / "convnet.keras", sha256, name="convnet", input_size=16)
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    assert analyse_smear(job.pk) == "done"
    prediction = Prediction.objects.get(smear=job.smear, model_version=version)
    assert prediction.heatmap_method == "grad-cam"


def test_sweeper_moves_cases_left_analysing_and_the_command_reports(world, model_version):
    from django.core.management import call_command

    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    assert analyse_smear(job.pk) == "done"
    Case.objects.filter(pk=case.pk).update(status=Case.Status.ANALYSING)  # its worker died before the move
    out = io.StringIO()
    call_command("sweep_analysis", older_than=0, stdout=out)
    assert "moved 1 finished case(s) to review" in out.getvalue()
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW


def test_case_moves_to_review_only_when_no_job_is_pending_and_it_is_not_signed(world, model_version):
    from cases.models import Diagnosis
    from cases.services import case_sign

    case = world.submit_case(files=two_smears())
    first, second = AnalysisJob.objects.filter(smear__case=case).order_by("pk")
    assert analyse_smear(first.pk) == "done"
    case.refresh_from_db()
    assert case.status == Case.Status.ANALYSING  # the second smear is still queued
    assert services.case_maybe_finished(case.pk) is False
    AnalysisJob.objects.filter(pk=second.pk).update(status=AnalysisJob.Status.RUNNING)
    assert services.case_maybe_finished(case.pk) is False
    AnalysisJob.objects.filter(pk=second.pk).update(status=AnalysisJob.Status.FAILED)
    assert services.case_maybe_finished(case.pk) is True  # failed is not pending: a person can retry it
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW
    assert services.case_maybe_finished(case.pk) is False  # nothing left to move

    case_sign(signature_method="password", user=world.pathologist, case=case, diagnosis=Diagnosis.values[0])
    assert services.case_maybe_finished(case.pk) is False  # a signature is never undone by the AI
    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED


def test_submission_does_not_read_the_model_versions_training_record(world, model_version, published):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ModelRecord.objects.update_or_create(version=model_version, defaults={"split": {"train": ["x.jpg"] * 1000}})
    with CaptureQueriesContext(connection) as queries:
        case = world.submit_case(files=two_smears())
    sql = [q["sql"] for q in queries.captured_queries]
    version_reads = [s for s in sql if s.startswith("SELECT") and '"training_modelversion"' in s.split("WHERE")[0]]
    assert version_reads and not any('"training_modelrecord"' in s for s in sql), sql
    # Both jobs in one INSERT, no savepoint: the smears were created by this very submission.
    assert sum(s.startswith('INSERT INTO "inference_analysisjob"') for s in sql) == 1
    assert AnalysisJob.objects.filter(smear__case=case, status="queued").count() == 2


@pytest.mark.slow
def test_nested_backbone_model_gets_grad_cam(tmp_path, world):
    """Application backbones (MobileNetV2 here) are one nested layer: Grad-CAM still explains them."""
    from ml import artifacts
    from ml.architectures import build_model

    model = build_model("mobilenetv2", image_size=64, num_classes=len(CLASS_NAMES), augment=True, seed=5)
    sha256 = artifacts.save_model_atomically(model, tmp_path / "mobilenet.keras")
    version = register_version(
        tmp_path / "mobilenet.keras", sha256, name="mobilenet", input_size=64, architecture="mobilenetv2"
    )
    case = world.submit_case(files=[smear_upload("wide.png", size=(90, 40))])
    job = AnalysisJob.objects.get(smear__case=case)
    assert analyse_smear(job.pk) == "done"
    prediction = Prediction.objects.get(smear=job.smear, model_version=version)
    assert prediction.heatmap_method == "grad-cam"
    with prediction.heatmap.open("rb") as handle:
        assert Image.open(io.BytesIO(handle.read())).size == (90, 40)


def test_workers_reuse_database_connections_and_replace_broken_ones(settings, monkeypatch):
    """Celery's Django fix-up closes the connection around every task unless CELERY_DB_REUSE_MAX is
    set; each task then starts with close_old_connections(), which drops an old or broken one."""
    from celery.fixups.django import DjangoWorkerFixup

    from inference import tasks, worker as worker_module
    from telediag.celery import app

    assert settings.CELERY_DB_REUSE_MAX >= 10
    assert DjangoWorkerFixup(app).db_reuse_max == settings.CELERY_DB_REUSE_MAX
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True

    calls = []
    monkeypatch.setattr("django.db.close_old_connections", lambda **kwargs: calls.append("close_old"))
    monkeypatch.setattr(worker_module, "run_job", lambda job_id, task_id="": calls.append(("run", job_id)) or "done")
    assert tasks.analyse_smear.run("5") == "done"
    assert calls == ["close_old", ("run", 5)]  # old connections are dealt with before the job


def test_services_publish_the_analysis_tasks_by_their_registered_names():
    from core.task_lookup import task_named
    from inference.services import ANALYSE_SMEAR_TASK, ANALYSE_SMEARS_TASK
    from inference.tasks import analyse_smear, analyse_smears

    assert task_named(ANALYSE_SMEAR_TASK) is analyse_smear._get_current_object()  # shared_task gives a Proxy
    assert task_named(ANALYSE_SMEARS_TASK) is analyse_smears._get_current_object()

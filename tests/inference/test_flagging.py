"""Case.ai_flagged follows the AI through the worker, failures, retries and re-runs, and the
backfill migration computes it for cases analysed before it existed."""

import threading
import time

import pytest
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from cases.models import Case
from inference import flagging, results, services
from inference.models import AnalysisJob, Prediction
from inference.tasks import analyse_smear
from tests.conftest import smear_upload
from tests.inference.conftest import register_version

BACKFILL = ("inference", "0007_case_ai_flagged_backfill")


def flagged(case):
    return Case.objects.values_list("ai_flagged", flat=True).get(pk=case.pk)


@pytest.mark.parametrize("threshold, expected", [(0.0, False), (1.01, True)])
def test_the_worker_flags_a_case_when_an_image_is_flagged(world, model_version, settings, threshold, expected):
    settings.ATTENTION_THRESHOLD = threshold  # above any probability: every image is "low confidence"
    case = world.submit_case()
    assert flagged(case) is False
    assert analyse_smear(AnalysisJob.objects.get(smear__case=case).pk) == "done"
    assert bool(Prediction.objects.get(smear__case=case).flags) is expected
    assert flagged(case) is expected


def test_a_failure_flags_the_case_and_a_successful_retry_clears_it(
    world, model_file, published, run_jobs, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.ATTENTION_THRESHOLD = 0.0  # the images that do get analysed are not flagged
    path, sha256 = model_file
    register_version(tmp_path / "missing.keras", sha256, name="broken")
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png")])
    first, second = AnalysisJob.objects.filter(smear__case=case).order_by("pk")
    assert analyse_smear(first.pk) == "failed"
    assert flagged(case) is True
    assert analyse_smear(second.pk) == "failed"

    (tmp_path / "missing.keras").write_bytes(path.read_bytes())
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.job_retry(user=world.pathologist, job=first)
    assert flagged(case) is True  # the other image's analysis still failed
    assert run_jobs() == ["done"]
    assert flagged(case) is True

    with django_capture_on_commit_callbacks(execute=True):
        services.case_rerun(user=world.pathologist, case=case, model_version=first.model_version)
    assert flagged(case) is False  # no failure left: queued again
    assert run_jobs() == ["done"]
    assert flagged(case) is False
    assert AnalysisJob.objects.filter(smear__case=case, status="done").count() == 2


def test_the_sweeper_giving_up_on_an_abandoned_job_flags_the_case(world, model_version, settings):
    from datetime import timedelta

    from django.utils import timezone

    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    AnalysisJob.objects.filter(pk=job.pk).update(
        status="running",
        attempts=settings.INFERENCE_MAX_ATTEMPTS,
        lease_expires_at=timezone.now() - timedelta(minutes=1),
    )
    assert services.sweep()["failed_abandoned"] == 1
    assert flagged(case) is True


@pytest.mark.django_db(transaction=True)
def test_a_retry_clearing_a_failure_while_a_flagged_result_is_stored_leaves_the_case_flagged(
    world, model_version, published
):
    """The worker raises the flag of a case that is already flagged (an earlier failure) while a
    retry of that failure recomputes it: the retry must wait for the worker's row lock and see its
    result, or the case would end unflagged with a flagged image."""
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png")])
    failed, analysed = AnalysisJob.objects.filter(smear__case=case).order_by("pk")
    assert services.job_fail(failed.pk, "boom", from_statuses=("queued",))
    assert flagged(case) is True
    stored, release, errors = threading.Event(), threading.Event(), []

    def store_a_flagged_result():
        try:
            with transaction.atomic():
                job = AnalysisJob.objects.select_related("smear", "model_version").get(pk=analysed.pk)
                prediction = Prediction(
                    smear=job.smear, model_version=job.model_version, job=job, label="pre_b", flags=["low confidence"]
                )
                results.store([(job, prediction)], timezone.now())
                stored.set()
                release.wait(10)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    def retry_the_failure():
        try:
            services.job_retry(user=world.pathologist, job=AnalysisJob.objects.get(pk=failed.pk))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    worker, retry = threading.Thread(target=store_a_flagged_result), threading.Thread(target=retry_the_failure)
    worker.start()
    try:
        assert stored.wait(10)
        retry.start()
        time.sleep(0.5)  # the retry reaches the case row while the result is not committed
    finally:
        release.set()
        worker.join()
        if retry.ident is not None:  # started
            retry.join()
    assert errors == []
    assert AnalysisJob.objects.get(pk=failed.pk).status == "queued"
    assert flagged(case) is True


def _analysed(world, version, *, flags=(), is_smear=True, job_status="done"):
    """A case as analysed before Case.ai_flagged existed: its rows written, the flag never set."""
    case = world.submit_case()
    smear = case.smears.get()
    job = AnalysisJob.objects.create(smear=smear, model_version=version, status=job_status)
    if job_status == "done":
        Prediction.objects.create(
            smear=smear, model_version=version, job=job, label="pre_b", flags=list(flags), is_smear=is_smear
        )
    return case


def test_the_backfill_migration_computes_the_flag_with_its_own_models(world):
    from django.test.utils import CaptureQueriesContext

    from training.models import ModelVersion

    version = ModelVersion.objects.create(  # not active: submitting queues no job of its own
        name="old", architecture="convnet_bn", file_path="old.keras", sha256="1" * 64, class_names=["pre_b"]
    )
    cases = {
        "plain": _analysed(world, version),
        "flagged image": _analysed(world, version, flags=["outside validated conditions"]),
        "not a smear": _analysed(world, version, is_smear=False),
        "failed": _analysed(world, version, job_status="failed"),
        "running": _analysed(world, version, job_status="running"),
    }
    stale = _analysed(world, version)
    Case.objects.filter(pk=stale.pk).update(ai_flagged=True)  # flagged by nothing: cleared
    assert not Case.objects.filter(ai_flagged=True).exclude(pk=stale.pk).exists()

    migration = MigrationLoader(connection).get_migration(*BACKFILL)
    state = MigrationLoader(connection).project_state(BACKFILL)
    with CaptureQueriesContext(connection) as queries:
        migration.operations[0].code(state.apps, None)  # what `migrate` runs, with the historical models
    assert len(queries) == 1 and queries[0]["sql"].startswith("UPDATE")

    assert {name for name, case in cases.items() if flagged(case)} == {"flagged image", "not a smear", "failed"}
    assert flagged(stale) is False
    # Only the rows whose flag changes are written: none, the second time.
    assert flagging.cases_flag_recompute(Case.objects.all()) == 0

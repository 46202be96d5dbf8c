"""Micro-batching (inference.batching): a worker takes waiting smears along into one model call."""

import numpy as np
import pytest

from cases.models import Case
from inference import batching, worker
from inference.models import AnalysisJob, Prediction
from inference.tasks import analyse_smear
from tests.conftest import smear_upload


def _cases(world, count, images=2):
    return [
        world.submit_case(
            files=[smear_upload(f"s{i}-{n}.png", colour=(150 + 20 * n, 60 + 30 * i, 120)) for n in range(images)]
        )
        for i in range(count)
    ]


@pytest.fixture
def batch_of(settings):
    def set_max(n):
        settings.INFERENCE_BATCH_MAX = n

    return set_max


def test_one_message_classifies_the_waiting_smears_in_one_call(world, model_version, batch_of, monkeypatch):
    batch_of(4)
    cases = _cases(world, 3)  # 6 jobs
    jobs = list(AnalysisJob.objects.order_by("enqueued_at", "pk"))
    loaded = worker.get_model(model_version)
    graph = batching.batched_graph(loaded)
    assert graph is not None  # the test model's batched graph passed the check against its runtime
    calls = []
    real_call = batching.BatchedGraph.__call__
    monkeypatch.setattr(
        batching.BatchedGraph, "__call__", lambda self, images: calls.append(len(images)) or real_call(self, images)
    )

    assert analyse_smear(jobs[0].pk) == "done"
    assert calls == [4]  # this message's job and the 3 oldest waiting ones, in one model call
    statuses = [AnalysisJob.objects.get(pk=j.pk).status for j in jobs]
    assert statuses == ["done"] * 4 + ["queued"] * 2
    # Same results as one image at a time, heatmaps included.
    from ml.images import prepare_image

    for job in jobs[:4]:
        prediction = Prediction.objects.get(smear=job.smear)
        with job.smear.image.open("rb") as handle:
            alone, _ = loaded.analyse(prepare_image(handle.read(), loaded.input_size))
        got = np.array([prediction.probabilities[name] for name in loaded.class_names])
        assert np.max(np.abs(got - alone)) < 1e-4
        assert prediction.heatmap_method == "grad-cam" and prediction.heatmap
    # The other messages of the batch find their job done: nothing happens twice.
    assert analyse_smear(jobs[1].pk) == "skipped"
    assert Prediction.objects.count() == 4
    # The last two go together; every case ends awaiting review.
    assert analyse_smear(jobs[4].pk) == "done" and calls == [4, 2]
    assert {c.status for c in Case.objects.filter(pk__in=[c.pk for c in cases])} == {"awaiting_review"}


def test_a_case_message_larger_than_the_batch_goes_in_calls_of_at_most_batch_max(
    world, model_version, batch_of, monkeypatch
):
    from inference.tasks import analyse_smears

    batch_of(2)
    [case] = _cases(world, 1, images=5)
    jobs = list(AnalysisJob.objects.filter(smear__case=case).order_by("pk"))
    calls = []
    real_call = batching.BatchedGraph.__call__
    monkeypatch.setattr(
        batching.BatchedGraph, "__call__", lambda self, images: calls.append(len(images)) or real_call(self, images)
    )
    assert analyse_smears([job.pk for job in jobs]) == {job.pk: "done" for job in jobs}
    assert calls == [2, 2, 1]
    assert Prediction.objects.filter(smear__case=case).count() == 5
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW


def test_an_empty_queue_means_a_batch_of_one(world, model_version, batch_of):
    batch_of(8)
    (case,) = _cases(world, 1, images=1)
    job = AnalysisJob.objects.get()
    assert analyse_smear(job.pk) == "done"
    assert Prediction.objects.get().heatmap_method == "grad-cam"
    case.refresh_from_db()
    assert case.status == "awaiting_review"


def test_claim_waiting_takes_only_queued_jobs_of_the_same_version(world, model_version, model_file, statements):
    from tests.inference.conftest import register_version

    _cases(world, 3)
    jobs = list(AnalysisJob.objects.order_by("enqueued_at", "pk"))
    other = register_version(*model_file, name="other-version", active=False)
    AnalysisJob.objects.filter(pk=jobs[2].pk).update(model_version=other)
    AnalysisJob.objects.filter(pk=jobs[3].pk).update(status="done")
    taken = batching.claim_waiting(jobs[0], 10, task_id="t-1")
    assert [j.pk for j in taken] == [jobs[1].pk, jobs[4].pk, jobs[5].pk]
    assert all(j.status == "running" and j.task_id == "t-1" and j.attempts == 1 for j in taken)
    assert batching.claim_waiting(jobs[0], 10, task_id="t-2") == []  # nothing left to take
    assert batching.claim_waiting(jobs[0], 0) == []


def test_an_unreadable_image_fails_only_its_job(world, model_version, batch_of):
    batch_of(4)
    _cases(world, 2)
    jobs = list(AnalysisJob.objects.order_by("enqueued_at", "pk"))
    smear = jobs[1].smear
    smear.image.storage.delete(smear.image.name)
    assert analyse_smear(jobs[0].pk) == "done"
    assert {j.pk: AnalysisJob.objects.get(pk=j.pk).status for j in jobs} == {
        jobs[0].pk: "done",
        jobs[1].pk: "failed",
        jobs[2].pk: "done",
        jobs[3].pk: "done",
    }
    assert "cannot be read" in AnalysisJob.objects.get(pk=jobs[1].pk).reason


def test_a_duplicate_in_a_batch_keeps_its_stored_prediction_and_the_others_are_stored(
    world, model_version, batch_of, statements, settings
):
    """The batch's results go in one statement; a smear that already has its Prediction (a duplicate
    run) makes that statement fail as a whole: then each is stored on its own, as one image at a time."""
    batch_of(4)
    _cases(world, 2)
    jobs = list(AnalysisJob.objects.order_by("enqueued_at", "pk"))
    existing = Prediction.objects.create(
        smear=jobs[2].smear,
        model_version=model_version,
        job=jobs[2],
        label="pro_b",
        probabilities={"pro_b": 1.0},
    )
    assert analyse_smear(jobs[0].pk) == "done"
    assert [AnalysisJob.objects.get(pk=j.pk).status for j in jobs] == ["done"] * 4
    assert Prediction.objects.get(smear=jobs[2].smear) == existing
    stored = Prediction.objects.exclude(pk=existing.pk)
    assert stored.count() == 3 and all(p.heatmap_method == "grad-cam" and p.heatmap for p in stored)
    files = sorted(p.name for p in (settings.MEDIA_ROOT / "heatmaps").rglob("*.png"))
    assert files == sorted(p.heatmap.name.rpartition("/")[2] for p in stored)  # the duplicate's file was removed


def test_a_heatmap_that_cannot_be_stored_leaves_the_batch_s_predictions_standing(
    world, model_version, batch_of, monkeypatch
):
    batch_of(4)
    _cases(world, 2)
    jobs = list(AnalysisJob.objects.order_by("enqueued_at", "pk"))

    def disk_full(png, smear):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(worker, "_store_heatmap", disk_full)
    assert analyse_smear(jobs[0].pk) == "done"
    predictions = Prediction.objects.filter(job__in=jobs)
    assert predictions.count() == 4
    assert set(predictions.values_list("heatmap", "heatmap_method")) == {("", "")}

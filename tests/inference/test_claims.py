"""inference.claims and inference.results: a claim and a result in one statement each (PostgreSQL),
the ORM's statements elsewhere; the same rows, the same guarantees either way."""

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from inference import claims, results
from inference.models import AnalysisJob, Prediction
from ml.classes import CLASS_NAMES
from tests.conftest import smear_upload


def _values(instance, skip=()):
    return {
        field.attname: getattr(instance, field.attname)
        for field in type(instance)._meta.concrete_fields
        if field.attname not in skip
    }


def _claim(job_id, task_id, max_attempts=3):
    now = timezone.now()
    jobs = claims.claim_queued(
        [job_id], max_attempts, now=now, task_id=task_id, worker="host:1", lease_expires_at=now + timedelta(seconds=20)
    )
    return jobs[0] if jobs else None


def test_a_claim_gives_the_job_with_the_rows_the_orm_would_load(
    world, model_version, statements, django_assert_num_queries
):
    case = world.submit_case()
    queued = AnalysisJob.objects.get(smear__case=case)
    now = timezone.now()
    [job] = claims.claim_queued(
        [queued.pk], 3, now=now, task_id="message-1", worker="host:1", lease_expires_at=now + timedelta(seconds=20)
    )
    expected = AnalysisJob.objects.with_version().select_related("smear__case").get(pk=queued.pk)
    assert _values(job) == _values(expected)
    assert (job.status, job.attempts, job.task_id, job.worker) == ("running", 1, "message-1", "host:1")
    assert (job.started_at, job.finished_at, job.lease_expires_at) == (now, None, now + timedelta(seconds=20))
    one_statement = statements == "one-statement"
    unloaded = job.model_version.get_deferred_fields()
    with django_assert_num_queries(0):  # the related rows came with the claim (the OOD parameters' digest only)
        assert _values(job.smear) == _values(expected.smear)
        assert _values(job.smear.case) == _values(expected.smear.case)
        assert unloaded == ({"ood"} if one_statement else set())
        assert _values(job.model_version, skip=unloaded) == _values(expected.model_version, skip=unloaded)
        assert job.model_version.class_names == list(CLASS_NAMES)  # JSON columns decoded, as the ORM does
        assert getattr(job.model_version, "ood_digest", None) == ("" if one_statement else None)  # no OOD model
    assert job.model_version.ood == expected.model_version.ood == {}  # loaded when read
    assert not job._state.adding and job._state.db == "default"

    assert _claim(queued.pk, "message-2") is None  # running: nobody else gets it
    assert _values(claims.job_with_rows(queued.pk)) == _values(expected)
    assert claims.job_with_rows(queued.pk + 1000) is None
    AnalysisJob.objects.filter(pk=queued.pk).update(status="queued", attempts=3)
    assert _claim(queued.pk, "message-3", max_attempts=3) is None  # no attempts left


@pytest.mark.django_db(transaction=True)
def test_of_workers_claiming_a_job_at_the_same_moment_exactly_one_gets_it(world, model_version, statements):
    case = world.submit_case(files=[smear_upload(f"s{n}.png", colour=(120 + 30 * n, 60, 150)) for n in range(3)])
    jobs = list(AnalysisJob.objects.filter(smear__case=case))
    workers = 4
    for job in jobs:
        start, winners = threading.Barrier(workers), []

        def take(task_id, job_id=job.pk, start=start, winners=winners):
            try:
                start.wait()
                if _claim(job_id, task_id) is not None:
                    winners.append(task_id)
            finally:
                connection.close()

        threads = [threading.Thread(target=take, args=(f"message-{n}",)) for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        job.refresh_from_db()
        assert job.status == "running" and job.attempts == 1 and job.task_id == winners[0]


@pytest.mark.django_db(transaction=True)
def test_claim_waiting_skips_jobs_another_worker_has_locked(world, model_version, statements):
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("the database has no SELECT ... FOR UPDATE SKIP LOCKED (one writer at a time)")
    case = world.submit_case(files=[smear_upload(f"s{n}.png", colour=(120 + 30 * n, 60, 150)) for n in range(4)])
    first, locked, *others = AnalysisJob.objects.filter(smear__case=case).order_by("enqueued_at", "pk")
    held, release = threading.Event(), threading.Event()

    def hold_lock():
        try:
            with transaction.atomic():
                list(AnalysisJob.objects.select_for_update().filter(pk=locked.pk))
                held.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    try:
        assert held.wait(10)
        now = timezone.now()
        taken = claims.claim_waiting(
            model_version.pk, first.pk, 10, 3, now=now, task_id="batch-1", worker="host:1", lease_expires_at=now
        )
    finally:
        release.set()
        thread.join()
    assert [job.pk for job in taken] == [job.pk for job in others]  # oldest first, without the locked one
    assert all(job.status == "running" and job.task_id == "batch-1" and job.smear.case == case for job in taken)
    assert AnalysisJob.objects.get(pk=locked.pk).status == "queued"


def _prediction(job, label=CLASS_NAMES[0]):
    return Prediction(
        smear=job.smear,
        model_version=job.model_version,
        job=job,
        label=label,
        probabilities={name: 0.25 for name in CLASS_NAMES},
        flags=["low confidence"],
        ood_score=1.5,
    )


def test_results_are_stored_all_or_nothing(world, model_version, statements):
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png", colour=(20, 90, 200))])
    first, second = (_claim(job.pk, "message-1") for job in AnalysisJob.objects.filter(smear__case=case))
    existing = _prediction(second)
    existing.save()
    now = timezone.now()
    mine = [(first, _prediction(first)), (second, _prediction(second))]
    with pytest.raises(IntegrityError):
        results.store(mine, now)
    assert list(Prediction.objects.all()) == [existing]  # nothing of the batch was stored
    assert set(AnalysisJob.objects.values_list("status", flat=True)) == {"running"}

    prediction = _prediction(first)
    results.store([(first, prediction)], now)
    stored = Prediction.objects.get(pk=prediction.pk)
    assert not prediction._state.adding and stored.flags == ["low confidence"] and stored.ood_score == 1.5
    assert stored.probabilities == prediction.probabilities and stored.created_at == prediction.created_at
    first.refresh_from_db()
    assert (first.status, first.finished_at, first.reason) == ("done", now, "")


def test_a_result_leaves_a_job_another_message_has_taken_over_alone(world, model_version, statements):
    case = world.submit_case()
    job = _claim(AnalysisJob.objects.get(smear__case=case).pk, "message-1")
    AnalysisJob.objects.filter(pk=job.pk).update(task_id="message-2")  # the job was taken over meanwhile
    results.store([(job, _prediction(job))], timezone.now())
    assert Prediction.objects.filter(job=job).exists()
    job.refresh_from_db()
    assert job.status == "running" and job.task_id == "message-2"


def test_a_claimed_version_reuses_the_cached_ood_detector_until_its_parameters_change(
    world, model_version, statements, django_assert_num_queries
):
    import numpy as np

    from ml import ood
    from training import gates, registry

    def detector(seed):
        rng = np.random.default_rng(seed)
        fitted = ood.MahalanobisOOD.fit(rng.normal(size=(40, 16)), np.arange(40) % 4, n_components=4)
        fitted.threshold = 3.0
        return fitted.to_dict()

    gates.clear_cache()
    first, second = detector(1), detector(2)
    registry.attach_ood(model_version, first)
    case = world.submit_case(files=[smear_upload(f"s{n}.png", colour=(120 + 30 * n, 60, 150)) for n in range(3)])
    jobs = list(AnalysisJob.objects.filter(smear__case=case).order_by("pk"))
    try:
        claimed = _claim(jobs[0].pk, "message-1").model_version
        if statements == "one-statement":
            assert claimed.ood_digest == first["digest"] and "ood" in claimed.get_deferred_fields()
        built = gates.ood_for(claimed)  # loads the parameters once
        assert built is not None and built.to_dict()["digest"] == first["digest"]

        again = _claim(jobs[1].pk, "message-2").model_version
        with django_assert_num_queries(0):
            assert gates.ood_for(again) is built  # the cached detector (one statement: parameters not loaded)
        registry.attach_ood(model_version, second)  # refitted after registration
        changed = gates.ood_for(_claim(jobs[2].pk, "message-3").model_version)
        assert changed is not built and changed.to_dict()["digest"] == second["digest"]
    finally:
        gates.clear_cache()

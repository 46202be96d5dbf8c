"""Reliability of the submission and analysis flow under faults (issue 15).

Unit-level: each test injects one fault into the real code path (the broker, the database, a
worker that vanishes) and checks that nothing stored is lost and nothing stays stuck. The
end-to-end fault suite with real services is ``reliability/`` (see docs/reliability.md).
"""

import pytest

from cases.models import Case, Smear
from inference import services
from inference.models import AnalysisJob
from tests.conftest import smear_upload


def two_smears():
    return [smear_upload("a.png", colour=(180, 60, 120)), smear_upload("b.png", size=(40, 70), colour=(90, 90, 200))]


@pytest.mark.django_db(transaction=True)
def test_a_committed_case_keeps_its_images_when_the_publish_is_interrupted(world, model_version, monkeypatch):
    """Defect 1: gunicorn's worker timeout raises SystemExit while the on-commit publish runs.
    The case is committed by then: its files must stay, and the sweeper publishes its jobs."""

    def interrupted(job_ids, **options):
        raise SystemExit(1)  # what gunicorn's SIGABRT handler raises in a timed-out sync worker

    monkeypatch.setattr(services, "publish_jobs", interrupted)
    with pytest.raises(SystemExit):
        world.submit_case(files=two_smears())
    case = Case.objects.get()
    smears = list(Smear.objects.filter(case=case))
    assert len(smears) == 2
    storage = Smear._meta.get_field("image").storage
    assert all(storage.exists(smear.image.name) for smear in smears)
    assert AnalysisJob.objects.filter(smear__case=case, status="queued").count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_submission_still_removes_its_files(world, model_version, monkeypatch):
    """The other side of defect 1: a failure before the commit leaves no file behind."""
    stored = []
    storage = Smear._meta.get_field("image").storage

    def insert_fails(smears, *args, **kwargs):
        stored.extend(smear.image.name for smear in smears)
        assert all(storage.exists(name) for name in stored)  # every file is written by then
        raise RuntimeError("database went away mid-submission")

    monkeypatch.setattr(Smear.objects, "bulk_create", insert_fails)
    with pytest.raises(RuntimeError):
        world.submit_case(files=two_smears())
    assert not Case.objects.exists()
    assert len(stored) == 2 and not any(storage.exists(name) for name in stored)


# --- Defect 2: a hung broker ------------------------------------------------------------------


@pytest.fixture
def hung_redis(tmp_path):
    """A Redis of our own, SIGSTOPped: it accepts connections and answers nothing."""
    from reliability.servers import RedisServer

    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def broker(settings):
    """Point this process's Celery app at another broker for one test (restored after)."""
    from telediag.celery import app

    saved = (app.conf.broker_url, dict(app.conf.broker_transport_options or {}))

    def use(url, transport_options):
        app.conf.broker_url, app.conf.broker_transport_options = url, transport_options

    yield use
    use(*saved)
    services._broker.drop()


def timed(function, *args, limit_s=30, **kwargs):
    """(result, seconds); a call that hangs is interrupted after ``limit_s`` (the test then fails)."""
    import signal
    import time

    def interrupt(signum, frame):
        raise TimeoutError(f"still blocked after {limit_s} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(limit_s)
    started = time.monotonic()
    try:
        return function(*args, **kwargs), time.monotonic() - started
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_hung_broker_never_holds_up_submissions_or_the_sweeper(world, model_version, hung_redis, broker):
    """Defect 2: with Redis stopped (SIGSTOP), a submission used to wait until Redis resumed.
    Now every publish is bounded, later ones in the back-off window do not try at all, and the
    sweeper publishes everything once the broker answers again."""
    import redis

    from inference import publishing

    publishing.breaker.reset()
    # The broker options production used before (no socket timeout at all).
    broker(hung_redis.url(), {"visibility_timeout": 660})
    hung_redis.pause()
    try:
        first, first_s = timed(world.submit_case, files=two_smears())
        second, second_s = timed(world.submit_case, files=[smear_upload()])
        sweep_counts, sweep_s = timed(services.sweep, requeue_after_s=0)
    finally:
        hung_redis.resume()
    assert first_s < 5, f"the first submission waited {first_s:.1f} s for a stopped broker"
    assert second_s < 1, f"a submission in the back-off window waited {second_s:.1f} s"
    assert sweep_s < 5, f"the sweeper waited {sweep_s:.1f} s for a stopped broker"
    jobs = AnalysisJob.objects.filter(smear__case__in=[first, second])
    assert jobs.count() == 3 and all(job.status == "queued" and job.last_enqueue_error for job in jobs)

    # Broker back: the sweeper publishes what could not be.
    counts = services.sweep(requeue_after_s=3600)
    assert counts["republished"] == 3
    assert all(job.published_at and not job.last_enqueue_error for job in AnalysisJob.objects.all())
    client = redis.Redis.from_url(hung_redis.url())
    waiting = client.llen("inference")
    assert 3 <= waiting <= 6  # a timed-out publish may still have landed: at most one extra per job


# --- Defect 6: the sweeper under a backlog ----------------------------------------------------


@pytest.fixture
def own_redis(tmp_path):
    from reliability.servers import RedisServer

    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_sweeper_does_not_multiply_messages_of_a_backlog(world, model_version, own_redis, broker):
    """Defect 6: with no worker consuming, each sweep used to add one message per queued job.
    The queue now stays at the messages published (one per case, carrying its smears); a broker
    restarted empty gets them all again (the sweeper's one message per job), and no more after."""
    import redis
    from django.utils import timezone

    broker(own_redis.url(), {"visibility_timeout": 660})
    client = redis.Redis.from_url(own_redis.url())
    for _ in range(3):
        world.submit_case(files=two_smears())
    jobs = AnalysisJob.objects.filter(status="queued")
    assert jobs.count() == 6 and client.llen("inference") == 3  # one message per case
    for minutes in (5, 10, 15, 20):  # four sweeps of a backlog that waits ever longer
        jobs.update(published_at=timezone.now() - timezone.timedelta(minutes=minutes))
        services.sweep(requeue_after_s=120)
        assert client.llen("inference") <= 2 * 3
    assert client.llen("inference") == 3

    client.lpop("inference")  # one case's message is lost
    jobs.update(published_at=timezone.now() - timezone.timedelta(minutes=5))
    # The jobs of one message go again (which one was lost, the broker cannot say: the oldest).
    assert services.sweep(requeue_after_s=120)["republished"] == 2
    assert client.llen("inference") == 4

    client.flushdb()  # the broker lost every message (restarted empty)
    jobs.update(published_at=timezone.now() - timezone.timedelta(minutes=5))
    assert services.sweep(requeue_after_s=120)["republished"] == 6
    assert client.llen("inference") == 6
    assert len(set(jobs.values_list("published_message_id", flat=True))) == 6  # a message each now
    for _ in range(2):  # a backlog of the sweeper's one-job messages is not multiplied either
        jobs.update(published_at=timezone.now() - timezone.timedelta(minutes=5))
        assert services.sweep(requeue_after_s=120)["republished"] == 0
    assert client.llen("inference") == 6


# --- Defect 5: a vanished worker --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_job_of_a_vanished_worker_is_queued_again_once_its_lease_expires(world, model_version, published, settings):
    """Defect 5: a worker killed mid-job (its message not coming back) left the job running for the
    hard time limit + 60 s. Now its lease runs out in INFERENCE_LEASE_S and the sweeper requeues it."""
    import time

    from inference import worker

    settings.INFERENCE_LEASE_S = 2
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    published.clear()
    assert worker.claim(job.pk, "message-of-a-worker-that-dies") is not None  # ... and it dies here
    assert services.sweep()["recovered"] == 0  # the lease still runs
    time.sleep(2.5)
    assert services.sweep()["recovered"] == 1
    job.refresh_from_db()
    assert job.status == "queued" and job.lease_expires_at is None and published.job_ids() == [job.pk]


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_keeps_its_lease_while_a_long_job_runs(world, model_version, published, settings, monkeypatch):
    """The other side: a job that runs longer than its lease (a model loading on a child's first
    job) is renewed by its worker and never taken away from it."""
    import threading
    import time

    from inference import worker
    from inference.tasks import analyse_smear

    # A lease of 4 s is renewed every second: even a busy machine (CI beside other work) renews it in time.
    settings.INFERENCE_LEASE_S = 4
    real_analyse = worker.analyse

    def slow_analyse(job):  # the job runs 2.5 leases
        time.sleep(10)
        return real_analyse(job)

    monkeypatch.setattr(worker, "analyse", slow_analyse)
    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    recovered, stop = [], threading.Event()

    def sweeper():
        from django.db import connection

        try:
            while not stop.is_set():
                recovered.append(services.sweep()["recovered"])
                time.sleep(0.3)
        finally:
            connection.close()

    thread = threading.Thread(target=sweeper)
    thread.start()
    try:
        assert analyse_smear(job.pk) == "done"
    finally:
        stop.set()
        thread.join(30)
    assert len(recovered) > 10 and sum(recovered) == 0
    job.refresh_from_db()
    assert job.status == "done" and job.attempts == 1


# --- Defect 4: a database blip ----------------------------------------------------------------


def _terminate_own_connection():
    """Kill this process's database session from another connection, as a restart of the server
    (pg_ctl restart -m fast) or a failover does: the next query fails with OperationalError."""
    import psycopg2
    from django.db import connection

    pid = connection.connection.get_backend_pid() if connection.connection else None
    assert pid, "the worker holds a database connection at this point"
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    other = psycopg2.connect(**params)
    try:
        other.autocommit = True
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_database_blip_mid_analysis_neither_fails_nor_strands_the_job(world, model_version, monkeypatch):
    """Defect 4: the worker's connection dies while it analyses. The job used to end failed with
    OperationalError (or stay running for minutes); now the step is retried and the job is done."""
    from inference import worker
    from inference.tasks import analyse_smear

    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    blips = []
    real_analyse = worker.analyse

    def analyse_after_a_blip(job):
        if not blips:
            blips.append(True)
            _terminate_own_connection()
        return real_analyse(job)

    monkeypatch.setattr(worker, "analyse", analyse_after_a_blip)
    assert analyse_smear(job.pk) == "done"
    job.refresh_from_db()
    case.refresh_from_db()
    assert blips and job.status == "done" and job.reason == "" and job.attempts == 1
    assert case.status == Case.Status.AWAITING_REVIEW and job.smear.predictions.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_database_blip_mid_analysis_of_a_case_s_message_is_retried_in_the_same_task(
    world, model_version, monkeypatch
):
    """Defect 4 for a message of several smears: the step is retried, each result stored once."""
    from inference import worker
    from inference.tasks import analyse_smears

    case = world.submit_case(files=two_smears())
    jobs = list(AnalysisJob.objects.filter(smear__case=case).order_by("pk"))
    blips, real_screen = [], worker.screen

    def screen_then_a_blip(job, *args):
        screened = real_screen(job, *args)
        if len(blips) == 1:  # the second image: the first one's row is not stored yet
            _terminate_own_connection()
        blips.append(job.pk)
        return screened

    monkeypatch.setattr(worker, "screen", screen_then_a_blip)
    assert analyse_smears([job.pk for job in jobs]) == {job.pk: "done" for job in jobs}
    assert len(blips) == 4  # both images screened twice: the batch ran again after the blip
    for job in jobs:
        job.refresh_from_db()
        assert job.status == "done" and job.reason == "" and job.attempts == 1
        assert job.smear.predictions.count() == 1
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW


@pytest.mark.django_db(transaction=True)
def test_a_database_blip_at_the_claim_is_retried(world, model_version, monkeypatch):
    from inference import claims
    from inference.tasks import analyse_smear

    case = world.submit_case()
    job = AnalysisJob.objects.get(smear__case=case)
    real_claim, calls = claims.claim_queued, []

    def claim_after_a_blip(job_ids, *args, **kwargs):
        calls.append(job_ids)
        if len(calls) == 1:
            AnalysisJob.objects.exists()  # the connection is open...
            _terminate_own_connection()  # ... and then the server goes away
        return real_claim(job_ids, *args, **kwargs)

    monkeypatch.setattr(claims, "claim_queued", claim_after_a_blip)
    assert analyse_smear(job.pk) == "done"
    assert calls == [[job.pk], [job.pk]]  # the claim's statement ran again, nothing else did
    job.refresh_from_db()
    assert job.status == "done" and job.attempts == 1


# --- A full disk ------------------------------------------------------------------------------


def test_a_full_disk_refuses_the_upload_clearly_and_keeps_nothing_half_saved(world, model_version, monkeypatch):
    """The media volume is full: the submission is a 503 saying so, and no case is half-saved."""
    import errno

    from django.core.files.storage import FileSystemStorage

    from cases.storage import StorageUnavailable

    def full(self, name, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", full)
    with pytest.raises(StorageUnavailable) as refused:
        world.submit_case(files=two_smears())
    assert refused.value.http_status == 503 and "nothing was saved" in refused.value.message
    assert not Case.objects.exists() and not AnalysisJob.objects.exists()

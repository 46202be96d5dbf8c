"""End to end with a REAL Celery worker process, the test PostgreSQL database and Redis.

Each test starts `celery -A telediag worker -Q inference,default -P prefork -c 1` as a subprocess
pointed at the database pytest-django created (read from django.db.connection.settings_dict) and at
a dedicated Redis database (TELEDIAG_TEST_REDIS_URL, default redis://127.0.0.1:6379/13; flushed
by each test), or at the
filesystem broker. Cases are submitted through the API (POST /api/cases/, multipart).

Locally these tests skip when Redis or PostgreSQL is unreachable; in CI (CI=true) they fail.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from cases.models import Case
from inference.models import AnalysisJob, Prediction
from telediag.celery import app as celery_app
from tests.conftest import smear_upload
from tests.inference.conftest import env_flag, register_version

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A Redis database of its own (flushed by each test): TELEDIAG_TEST_REDIS_URL overrides it.
REDIS_URL = os.environ.get("TELEDIAG_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
_redis = urlsplit(REDIS_URL)
REDIS_HOST, REDIS_PORT, REDIS_DB = _redis.hostname, _redis.port or 6379, int(_redis.path.strip("/") or 0)
WAIT_S = 90


def _unavailable(reason):
    if env_flag("CI"):
        pytest.fail(f"Integration services are required in CI: {reason}")
    pytest.skip(reason)


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.fixture
def services_up(db):
    if connection.vendor != "postgresql":
        _unavailable("the worker shares the test database: run the tests on PostgreSQL")
    try:
        import redis

        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Redis"
        _unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT} is unreachable: {exc}")
    client.flushdb()
    yield client
    client.flushdb()


def worker_database_url():
    data = connection.settings_dict
    auth = quote(data["USER"] or "postgres")
    if data.get("PASSWORD"):
        auth += ":" + quote(data["PASSWORD"])
    return f"postgres://{auth}@{data['HOST'] or '127.0.0.1'}:{data['PORT'] or 5432}/{data['NAME']}"


def use_broker(url, transport_options):
    """Point this (test) process's Celery app at a broker; publishing reads it on each batch."""
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = transport_options


@pytest.fixture
def broker_settings():
    saved = (celery_app.conf.broker_url, dict(celery_app.conf.broker_transport_options or {}))
    yield
    use_broker(*saved)


def redis_broker():
    use_broker(REDIS_URL, {"visibility_timeout": 600})


class Worker:
    def __init__(self, tmp_path, broker_url, var_dir, extra_env=None):
        self.log_path = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "telediag.settings_test",
            "TELEDIAG_TEST_DATABASE_URL": worker_database_url(),
            "CELERY_BROKER_URL": broker_url,
            "TELEDIAG_VAR_DIR": str(var_dir),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "TELEDIAG_TF_INTRA_OP_THREADS": "2",
            "TELEDIAG_TF_INTER_OP_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **(extra_env or {}),
        }
        command = [
            sys.executable,
            "-m",
            "tests.inference.faulty_worker",
            "worker",
            "-Q",
            "inference,default",
            "-P",
            "prefork",
            "-c",
            "1",
            "-n",
            f"itest-{uuid.uuid4().hex[:8]}@%h",
            "-l",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self):
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        try:  # children left behind in the process group
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()


@pytest.fixture
def start_worker(tmp_path):
    workers = []

    def start(broker_url=REDIS_URL, var_dir=None, **extra_env):
        worker = Worker(tmp_path, broker_url, var_dir or tmp_path / "worker-var", extra_env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def submit(client, world, count=1, **fields):
    """POST /api/cases/ (multipart) as the clinician; returns the Case."""
    client.force_login(world.clinician)
    files = [smear_upload(f"smear-{i}.png", colour=(40 * i % 255, 90, 160)) for i in range(count)]
    response = client.post(
        "/api/cases/", {"patient": world.patient.pk, "images": files, "priority": "urgent", **fields}
    )
    assert response.status_code == 201, response.content
    return Case.objects.get(pk=response.json()["id"])


def wait_for(predicate, what, worker, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if worker is not None and worker.process.poll() is not None:
            pytest.fail(f"The worker exited ({worker.process.returncode}) while waiting for {what}:\n{worker.output()}")
        time.sleep(0.3)
    pytest.fail(f"Timed out after {timeout} s waiting for {what}.\nWorker log:\n{worker.output() if worker else ''}")


def case_finished(case):
    def check():
        case.refresh_from_db()
        return case.status == Case.Status.AWAITING_REVIEW

    return check


@pytest.fixture
def version(model_file):
    path, sha256 = model_file
    return register_version(path, sha256, name=f"itest-{uuid.uuid4().hex[:6]}")


def test_worker_analyses_a_case_submitted_through_the_api(
    client, world, services_up, version, start_worker, broker_settings
):
    redis_broker()
    worker = start_worker()
    case = submit(client, world, count=2)
    wait_for(case_finished(case), "the case to be analysed", worker)
    predictions = Prediction.objects.filter(smear__case=case, model_version=version)
    assert predictions.count() == 2
    assert all(p.heatmap and p.heatmap_method == "grad-cam" for p in predictions)
    assert all(p.worker and p.worker != f"{socket.gethostname()}:{os.getpid()}" for p in predictions)
    assert set(AnalysisJob.objects.filter(smear__case=case).values_list("status", "attempts")) == {("done", 1)}
    data = client.get(f"/api/cases/{case.pk}/analysis/").json()
    assert data["state"] == "done" and data["result"]["label"]


def test_filesystem_broker_needs_no_server(client, world, db, version, start_worker, broker_settings, tmp_path):
    if connection.vendor != "postgresql":
        _unavailable("the worker shares the test database: run the tests on PostgreSQL")
    var_dir = tmp_path / "fs-var"
    folder = var_dir / "broker" / "queue"
    folder.mkdir(parents=True)
    (var_dir / "broker" / "processed").mkdir()
    (var_dir / "broker" / "control").mkdir()
    use_broker(
        "filesystem://",
        {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "processed_folder": str(var_dir / "broker" / "processed"),
            "store_processed": False,
            "control_folder": str(var_dir / "broker" / "control"),
        },
    )
    worker = start_worker(broker_url="filesystem://", var_dir=var_dir)
    case = submit(client, world)
    wait_for(case_finished(case), "the case to be analysed over the filesystem broker", worker)
    assert Prediction.objects.filter(smear__case=case).count() == 1
    shutil.rmtree(var_dir, ignore_errors=True)


@pytest.mark.parametrize("smears", [1, 2], ids=["one-smear message", "a case's two-smear message"])
def test_worker_child_killed_mid_task_the_task_runs_again(
    client, world, services_up, version, start_worker, broker_settings, smears
):
    redis_broker()
    worker = start_worker(FAULT_ANALYSIS_DELAY_S="4")
    case = submit(client, world, count=smears)
    jobs = AnalysisJob.objects.filter(smear__case=case)

    def running():
        return all(job.status == AnalysisJob.Status.RUNNING and job.worker for job in jobs.all())

    wait_for(running, "the jobs to start", worker)
    [taken_by] = {job.worker for job in jobs.all()}  # one child holds the whole message
    host, pid = taken_by.rsplit(":", 1)
    assert host == socket.gethostname() and int(pid) != worker.process.pid
    os.kill(int(pid), signal.SIGKILL)  # the pool child dies mid-task; the parent starts a new one

    wait_for(case_finished(case), "the case to complete after the kill", worker)
    for job in jobs.all():
        assert job.status == "done" and job.attempts == 2
        assert job.worker != f"{host}:{pid}"
    assert Prediction.objects.filter(smear__case=case).count() == smears


def test_task_that_kills_its_worker_every_time_fails_after_max_attempts(
    client, world, services_up, version, start_worker, broker_settings
):
    redis_broker()
    worker = start_worker(FAULT_ANALYSIS_KILLS_WORKER="1", TELEDIAG_INFERENCE_MAX_ATTEMPTS="3")
    case = submit(client, world)
    job = AnalysisJob.objects.get(smear__case=case)

    def failed():
        job.refresh_from_db()
        return job.status == AnalysisJob.Status.FAILED

    wait_for(failed, "the job to fail", worker)
    assert job.attempts == 3 and "3 times" in job.reason
    wait_for(case_finished(case), "the case to become reviewable without the AI", worker)
    assert not Prediction.objects.filter(smear__case=case).exists()


def test_broker_down_at_submission_then_sweeper_after_it_is_back(
    client, world, services_up, version, start_worker, broker_settings
):
    use_broker(f"redis://127.0.0.1:{_closed_port()}/{REDIS_DB}", {"visibility_timeout": 600})
    started = time.monotonic()
    case = submit(client, world, count=2)  # the submission must succeed, and quickly
    assert time.monotonic() - started < 15
    jobs = AnalysisJob.objects.filter(smear__case=case)
    assert [job.status for job in jobs] == ["queued", "queued"]
    assert all(job.last_enqueue_error and job.published_at is None for job in jobs)
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED

    worker = start_worker()  # the broker is back
    redis_broker()
    call_command("sweep_analysis")
    wait_for(case_finished(case), "the case to complete after the sweep", worker)
    assert Prediction.objects.filter(smear__case=case).count() == 2
    assert all(
        job.publish_count == 1 and job.last_enqueue_error == "" for job in AnalysisJob.objects.filter(smear__case=case)
    )


def test_worker_startup_does_not_import_tensorflow_in_the_parent(services_up, start_worker, broker_settings):
    """The parent must never load TensorFlow before forking (checked by its log warning)."""
    worker = start_worker()
    wait_for(lambda: "ready." in worker.output(), "the worker to be ready", worker, timeout=60)
    assert "before forking" not in worker.output()
    assert Path(worker.log_path).exists()

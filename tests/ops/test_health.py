"""/healthz, /readyz and the worker's heartbeat check, against gunicorn, PostgreSQL, Redis and a
real Celery worker."""

import hashlib
import json
import subprocess
import sys

import pytest
from django.db import connection

from tests.ops.conftest import ROOT, free_port, http_get, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def active_version(tmp_path, name="ready-model"):
    from training.models import ModelVersion

    path = tmp_path / "model.keras"
    path.write_bytes(b"not loaded by the readiness check")
    version = ModelVersion.objects.create(
        name=name,
        architecture="convnet_bn",
        file_path=str(path),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        class_names=["a", "b"],
    )
    version.activate()
    return version


def production_env(redis_url, **extra):
    # Production-like: HTTPS redirect on and a host name the probes do not send.
    return {"TELEDIAG_HTTPS": "true", "ALLOWED_HOSTS": "telediag.example.org", "CELERY_BROKER_URL": redis_url, **extra}


def test_healthz_and_readyz_answer_probes_by_ip_and_say_what_is_missing(postgres, redis_url, start_gunicorn, tmp_path):
    base, server = start_gunicorn(**production_env(redis_url))
    status, headers, body = http_get(base + "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert "no-cache" in headers.get("Cache-Control", "")
    # The compose file's health check of `web`, as the container runs it.
    import yaml

    test = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())["services"]["web"]["healthcheck"]["test"]
    port = base.rsplit(":", 1)[1]
    command = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in test[1:]]
    assert command[0] == "python" and f":{port}/healthz" in command[-1]
    assert subprocess.run([sys.executable, *command[1:]], cwd=ROOT, timeout=60).returncode == 0

    # No active model yet: not ready, and the answer says why.
    status, _, body = http_get(base + "/readyz")
    report = json.loads(body)
    assert status == 503, report
    assert report["ActiveModel()"] == "Unavailable: No active model version: promote one"
    assert {key: value for key, value in report.items() if key != "ActiveModel()"} == {
        "Database(alias='default')": "OK",
        "Broker()": "OK",
        "Storage(alias='default')": "OK",
        "Migrations()": "OK",
    }

    version = active_version(tmp_path)
    status, _, body = http_get(base + "/readyz")
    assert status == 200, body
    assert set(json.loads(body).values()) == {"OK"}

    # Other pages still get the host check and the HTTPS redirect.
    assert http_get(base + "/accounts/login/")[0] == 400
    assert http_get(base + "/accounts/login/", {"Host": "telediag.example.org"})[0] == 301

    # The model file disappears: not ready.
    (tmp_path / "model.keras").unlink()
    status, _, body = http_get(base + "/readyz")
    assert status == 503 and "missing" in json.loads(body)["ActiveModel()"]
    assert version.name in json.loads(body)["ActiveModel()"]


def test_readyz_reports_an_unreachable_broker_and_unapplied_migrations(postgres, redis_url, start_gunicorn, tmp_path):
    active_version(tmp_path)
    base, _ = start_gunicorn(**production_env(f"redis://127.0.0.1:{free_port()}/0"))
    status, _, body = http_get(base + "/readyz")
    report = json.loads(body)
    assert status == 503 and report["Broker()"].startswith("Unavailable: Broker unreachable"), report
    assert report["Database(alias='default')"] == "OK"

    # A deploy that did not run `migrate`: the newest migration of an app is not recorded as applied.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, app, name, applied FROM django_migrations WHERE app = 'inference' ORDER BY id DESC LIMIT 1"
        )
        row = cursor.fetchone()
        cursor.execute("DELETE FROM django_migrations WHERE id = %s", [row[0]])
    try:
        status, _, body = http_get(base + "/readyz")
        assert status == 503 and json.loads(body)["Migrations()"].startswith("Unavailable: 1 migration(s) not applied")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO django_migrations (id, app, name, applied) VALUES (%s, %s, %s, %s)", row)


def test_worker_heartbeat_file_is_a_container_health_check(postgres, redis_url, start_worker, tmp_path):
    heartbeat = tmp_path / "heartbeat"
    check = [sys.executable, "-m", "ops.heartbeat", str(heartbeat), "--max-age", "5"]
    assert subprocess.run(check, cwd=ROOT, capture_output=True).returncode == 1  # no worker yet

    worker = start_worker(
        broker_url=redis_url, TELEDIAG_WORKER_HEARTBEAT_FILE=str(heartbeat), TELEDIAG_WORKER_HEARTBEAT_S="1"
    )
    wait_until(heartbeat.exists, "the first heartbeat", worker)
    first = heartbeat.stat().st_mtime
    wait_until(lambda: heartbeat.stat().st_mtime > first, "the heartbeat to be renewed", worker, timeout=30)
    result = subprocess.run(check, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("healthy"), result.stderr

    worker.stop()
    result = subprocess.run(check, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "unhealthy" in result.stderr


def test_worker_heartbeat_goes_stale_while_the_broker_is_lost_and_resumes(postgres, start_worker, processes, tmp_path):
    """A worker whose broker is gone still runs, but its health check fails until it is back."""
    import shutil

    from tests.ops.conftest import Process, unavailable

    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start_redis():
        process = Process(command, None, tmp_path / f"redis-{len(processes)}.log")
        processes.append(process)
        return process

    redis_process = start_redis()
    heartbeat = tmp_path / "heartbeat"
    check = [sys.executable, "-m", "ops.heartbeat", str(heartbeat), "--max-age", "4"]
    worker = start_worker(
        broker_url=f"redis://127.0.0.1:{port}/0",
        TELEDIAG_WORKER_HEARTBEAT_FILE=str(heartbeat),
        TELEDIAG_WORKER_HEARTBEAT_S="1",
    )
    wait_until(
        lambda: subprocess.run(check, cwd=ROOT, capture_output=True).returncode == 0, "a fresh heartbeat", worker
    )

    redis_process.stop()
    wait_until(
        lambda: subprocess.run(check, cwd=ROOT, capture_output=True).returncode == 1,
        "the heartbeat to go stale",
        worker,
        timeout=60,
    )
    assert worker.process.poll() is None  # the process lives on: only the check tells

    start_redis()
    wait_until(
        lambda: subprocess.run(check, cwd=ROOT, capture_output=True).returncode == 0,
        "the heartbeat to resume once the broker is back",
        worker,
        timeout=120,
    )

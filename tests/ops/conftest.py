"""Real processes for the operations tests: gunicorn serving the test database, a Celery worker,
an S3-compatible server (moto in server mode), all on loopback ports chosen at run time."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.inference.conftest import env_flag

ROOT = Path(settings.BASE_DIR)


def unavailable(reason):
    if env_flag("CI"):
        pytest.fail(f"Required in CI: {reason}")
    pytest.skip(reason)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url, headers=None, timeout=30):
    """(status, headers, body) of a GET, without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Process:
    """A subprocess in its own process group, its output in a log file; stopped by the fixture."""

    def __init__(self, command, env, log_path):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def output(self):
        return Path(self.log_path).read_text(errors="replace")[-8000:]

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self.log.close()


def wait_until(predicate, what, process=None, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        if process is not None and process.process.poll() is not None:
            pytest.fail(f"The process exited ({process.process.returncode}) while waiting for {what}:\n{process.output()}")
        time.sleep(0.3)
    pytest.fail(f"Timed out waiting for {what}.\n{process.output() if process else ''}")


@pytest.fixture
def processes():
    started = []
    yield started
    for process in reversed(started):
        process.stop()


def base_env(**overrides):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "telediag.settings_test",
        "PYTHONUNBUFFERED": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@pytest.fixture
def start_gunicorn(processes, tmp_path):
    """gunicorn telediag.wsgi on a free loopback port; returns its base URL once /healthz answers."""

    def start(**env_overrides):
        from tests.inference.test_integration import worker_database_url

        port = free_port()
        env = base_env(TELEDIAG_TEST_DATABASE_URL=worker_database_url(), MEDIA_ROOT=settings.MEDIA_ROOT,
                       **env_overrides)
        command = [sys.executable, "-m", "gunicorn", "telediag.wsgi:application", "--bind", f"127.0.0.1:{port}",
                   "--workers", "1", "--timeout", "120"]
        process = Process(command, env, tmp_path / f"gunicorn-{uuid.uuid4().hex[:6]}.log")
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(base + "/healthz", timeout=5)[0] == 200, "gunicorn to answer", process)
        return base, process

    return start


@pytest.fixture
def redis_url():
    from tests.inference.test_integration import REDIS_DB, REDIS_HOST, REDIS_PORT, REDIS_URL

    try:
        import redis

        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT} is unreachable: {exc}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def postgres(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        unavailable("these tests need the PostgreSQL test database")
    return connection


@pytest.fixture
def start_worker(tmp_path):
    """A real `celery -A telediag worker -Q inference,default` (tests.inference.test_integration.Worker)."""
    from tests.inference.test_integration import Worker

    workers = []

    def start(broker_url, var_dir=None, **extra_env):
        worker = Worker(tmp_path, broker_url, var_dir or tmp_path / "worker-var", extra_env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()

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
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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
            pytest.fail(
                f"The process exited ({process.process.returncode}) while waiting for {what}:\n{process.output()}"
            )
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
        # `python`, `celery`, `gunicorn` of this virtualenv, as on an image's PATH.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@pytest.fixture
def start_gunicorn(processes, tmp_path):
    """gunicorn telediag.wsgi on a free loopback port; returns its base URL once /healthz answers."""

    def start(workers=1, extra_args=(), **env_overrides):
        from tests.inference.test_integration import worker_database_url

        port = free_port()
        env = base_env(
            TELEDIAG_TEST_DATABASE_URL=worker_database_url(), MEDIA_ROOT=settings.MEDIA_ROOT, **env_overrides
        )
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "telediag.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "120",
            *extra_args,
        ]
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


S3_BUCKET = "telediag-test-media"
S3_REGION = "us-east-1"
S3_KEY_ID, S3_SECRET = "telediag-test-key-id", "telediag-test-secret-key"


class S3Server:
    def __init__(self, endpoint, tmp_path):
        self.endpoint = endpoint
        self.bucket = S3_BUCKET
        key_file, secret_file = tmp_path / "s3-key-id", tmp_path / "s3-secret"
        key_file.write_text(S3_KEY_ID + "\n")
        secret_file.write_text(S3_SECRET + "\n")
        # How a deployment passes them: secret files (*_FILE), never the values in the environment.
        self.env = {
            "TELEDIAG_S3_BUCKET": S3_BUCKET,
            "TELEDIAG_S3_ENDPOINT_URL": endpoint,
            "TELEDIAG_S3_REGION": S3_REGION,
            "TELEDIAG_S3_ACCESS_KEY_ID_FILE": str(key_file),
            "TELEDIAG_S3_SECRET_ACCESS_KEY_FILE": str(secret_file),
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_REGION,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
        )

    def storages(self, base):
        options = {
            "bucket_name": S3_BUCKET,
            "endpoint_url": self.endpoint,
            "region_name": S3_REGION,
            "access_key": S3_KEY_ID,
            "secret_key": S3_SECRET,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": 300,
            "signature_version": "s3v4",
            "file_overwrite": False,
        }
        backend = "storages.backends.s3.S3Storage"
        return {
            **base,
            "default": {"BACKEND": backend, "OPTIONS": options},
            "models": {"BACKEND": backend, "OPTIONS": {**options, "location": "models"}},
        }


@pytest.fixture
def s3_server(processes, tmp_path):
    """moto's S3 server (`python -m moto.server`) on a free loopback port, with a private bucket."""
    try:
        import moto  # noqa: F401
    except ImportError:
        unavailable("moto[server] is not installed (requirements-dev.txt)")
    port = free_port()
    process = Process(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], base_env(), tmp_path / "moto.log"
    )
    processes.append(process)
    server = S3Server(f"http://127.0.0.1:{port}", tmp_path)

    def answers():
        from botocore.exceptions import BotoCoreError

        try:
            return server.client().list_buckets() is not None
        except BotoCoreError:
            return False

    wait_until(answers, "the S3 server", process, timeout=60)
    server.client().create_bucket(Bucket=S3_BUCKET)
    return server

"""The whole analysis path vs the raw model: API upload → Celery task → stored Prediction.

    .venv/bin/python bench/inference_path.py                          # builds a MobileNetV2 if needed
    .venv/bin/python bench/inference_path.py --model-file var/models/NAME/model.keras --images 200
    .venv/bin/python bench/inference_path.py --runtime keras         # the worker without TFLite

What runs (all real processes, on this machine):

- a throwaway PostgreSQL database (``--db``, default telediag_bench; dropped, created and migrated
  at the start), its own Redis database as the broker (``--redis``, default db 12, flushed), a
  temporary var/media/model folder;
- the API (token auth) served by gunicorn, as in production (``--server runserver`` for Django's
  development server), and ``celery -A telediag worker -Q
  inference,default -P prefork -c 1`` (TensorFlow threads = the CPU count), both warmed up first;
- the model: ``--model-file`` (registered like a trained or shipped model, smear check included,
  when a metadata.json lies beside it), else a ``--architecture`` model (MobileNetV2) at
  ``--image-size`` (224 px) trained for a few steps on real images (synthetic ones when the data
  set is absent), so its outputs are not trivial.

Measured, interleaved so background load hits both sides alike (``--rounds``):

(a) raw model, in this process: ``predict_on_batch`` of one prepared image at a time, warm:
    images per second and single-image latency (also the batch-32 rate, the TFLite runtime the
    worker uses, and the worker's whole per-image work without Celery, database or storage:
    decode, smear check, runtime, overlay — the ceiling of path/raw);
(b) the path, ``--images`` real images (default 200), POSTed as cases of ``--per-upload`` images
    each (default 1; a case's smears go in one request and its jobs in one broker message;
    multipart, token auth, ``Prefer: return=minimal`` unless ``--full-response``), until their
    Prediction rows are stored:
    - sequential: one upload at a time, the next after the previous prediction is stored: the
      latency a clinician sees (median, p95);
    - burst: all uploads sent at once by two client threads: throughput (images / time from the
      first upload to the last stored prediction).

``--pin`` gives the model its own core, as a deployment with separate web and inference nodes
does: the worker (one child, one model thread) and the raw-model measurement run on the last CPU,
the web server and the upload client on the others (PostgreSQL and Redis are not moved). Without
it every process shares every core, and the ratio also measures how much CPU the web tier takes
from the model on one small machine.

Reported: ratio path/raw throughput (target ≥ 0.8), per-image overhead outside the model (burst
time per image minus the raw model's time per image; target < 50 ms), p95 latency (< 1 s), and
the worker's own split (Prediction.total_ms − inference_ms), the CPU per image of the web server
and the worker outside the model (their CPU less the runtime's own CPU per image; issue 19's
target ≤ 10 ms), with the CPU used by other processes.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_DATA,
    ROOT,
    Contention,
    machine_line,
    median,
    percentile,
    top_other_processes,
    write_synthetic_smears,
)

TARGET_RATIO = 0.8
TARGET_OVERHEAD_MS = 50.0
TARGET_P95_S = 1.0
TARGET_CPU_OUTSIDE_MS = 10.0  # issue 19: web server + worker, per image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-file", help="a .keras model to serve (default: build a MobileNetV2)")
    parser.add_argument(
        "--architecture", default="mobilenetv2", help="architecture of the model built when none is given"
    )
    parser.add_argument("--image-size", type=int, default=224, help="input size of the model built when none is given")
    parser.add_argument(
        "--train-steps", type=int, default=4, help="training steps of the model built when none is given"
    )
    parser.add_argument("--images", type=int, default=200, help="images per path measurement")
    parser.add_argument(
        "--per-upload", type=int, default=1, help="images per case upload (a case's smears go in one request)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="raw/sequential/raw/burst rounds")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="real images (synthetic when absent)")
    parser.add_argument("--db", default="telediag_bench", help="throwaway PostgreSQL database (dropped and created)")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no db name)")
    parser.add_argument(
        "--broker",
        "--redis",
        dest="redis",
        default="redis://127.0.0.1:6379/12",
        help="broker URL: Redis (this db is flushed) or RabbitMQ (amqp://: its task queues are purged)",
    )
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "tflite", "keras"),
        help="TELEDIAG_INFERENCE_RUNTIME for the worker",
    )
    parser.add_argument("--client-threads", type=int, default=2, help="upload threads in the burst")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="worker children (-c); each gets CPU count / concurrency model threads",
    )
    parser.add_argument(
        "--server",
        choices=("gunicorn", "runserver"),
        default="gunicorn",
        help="web server for the API (gunicorn: sync workers, one per upload thread)",
    )
    parser.add_argument(
        "--full-response",
        action="store_true",
        help="ask for the whole case in each 201 (default: Prefer: return=minimal)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the worker and the raw model on the last CPU, web server and client on the others",
    )
    parser.add_argument("--work-dir", help="var/media/model folder (default: a new temporary one)")
    parser.add_argument("--json", help="write the results to this JSON file")
    return parser.parse_args(argv)


def log(message):
    print(message, flush=True)


# --------------------------------------------------------------------------------------------------
# Environment: database, settings, model


class Pinning:
    """CPU sets for --pin: the model's core (worker, raw measurement) and the web tier's cores."""

    def __init__(self, enabled):
        cpus = sorted(os.sched_getaffinity(0))
        self.enabled = bool(enabled)
        if self.enabled and len(cpus) < 2:
            raise SystemExit("--pin needs at least 2 CPUs")
        self.model = cpus[-1:] if self.enabled else cpus
        self.web = cpus[:-1] if self.enabled else cpus

    def model_threads(self, concurrency):
        return max(1, len(self.model) // max(1, concurrency))

    def prefix(self, cpus):
        return ["taskset", "-c", ",".join(map(str, cpus))] if self.enabled else []

    def enter(self, cpus):
        """Move this thread (threads it starts later inherit it) onto ``cpus``."""
        if self.enabled:
            os.sched_setaffinity(0, cpus)

    def describe(self):
        if not self.enabled:
            return "not pinned: every process on every CPU"
        return (
            f"pinned: worker and raw model on CPU {','.join(map(str, self.model))}, web server and client on "
            f"CPU {','.join(map(str, self.web))} (PostgreSQL and Redis not moved)"
        )


def prepare_environment(args, work, pinning):
    env = {
        "DJANGO_SETTINGS_MODULE": "telediag.settings",
        "DATABASE_URL": f"{args.pg.rstrip('/')}/{args.db}",
        "CELERY_BROKER_URL": args.redis,
        "TELEDIAG_VAR_DIR": str(work / "var"),
        "MEDIA_ROOT": str(work / "media"),
        "TELEDIAG_MODEL_DIR": str(work / "models"),
        "SECRET_KEY": "bench-only-" + uuid.uuid4().hex + uuid.uuid4().hex,
        "DEBUG": "false",
        "TELEDIAG_DEMO": "false",
        "TELEDIAG_HTTPS": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TELEDIAG_INFERENCE_RUNTIME": args.runtime,
        "TELEDIAG_TF_INTRA_OP_THREADS": str(pinning.model_threads(args.concurrency)),
        "TELEDIAG_TF_INTER_OP_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        # A child recycled mid-measurement (default: after 500 tasks) reloads the model for seconds.
        "TELEDIAG_WORKER_MAX_TASKS_PER_CHILD": "100000",
    }
    os.environ.update(env)
    (work / "var").mkdir(parents=True, exist_ok=True)
    return env


def recreate_database(args):
    import psycopg2

    connection = psycopg2.connect(f"{args.pg.rstrip('/')}/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{args.db}"')
    connection.close()


def empty_broker(url):
    """Empty the broker: a Redis db is flushed, a RabbitMQ broker's task queues are purged."""
    from telediag import brokers

    if not brokers.is_amqp(url):
        import redis

        redis.Redis.from_url(url).flushdb()
        return
    from kombu import Connection

    with Connection(url) as connection:
        channel = connection.default_channel
        for queue in brokers.QUEUE_NAMES:
            try:
                channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue never declared has nothing to purge
                channel = connection.channel()


def load_real_images(data_dir, count, size):
    """``count`` JPEG/PNG files' bytes (classes interleaved), synthetic ones when there is no data."""
    root = Path(data_dir)
    source = "real"
    if not root.is_dir():
        root = write_synthetic_smears(Path(tempfile.mkdtemp(prefix="bench-path-data-")), -(-count // 4), size)
        source = "synthetic"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    pools = [
        sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".tif"))
        for folder in folders
    ]
    files, i = [], 0
    while len(files) < count and any(i < len(pool) for pool in pools):
        files.extend(pool[i] for pool in pools if i < len(pool))
        i += 1
    files = files[:count]
    while len(files) < count:
        files += files[: count - len(files)]
    labels = {folder.name: index for index, folder in enumerate(folders)}
    return [(f.name, f.read_bytes(), labels[f.parent.name]) for f in files], source, root


def build_model_file(args, work, images):
    """A MobileNetV2 (or --architecture) trained for a few steps, saved as .keras; returns (path, sha256)."""
    import keras
    import numpy as np

    from ml import artifacts
    from ml.architectures import build_model
    from ml.images import prepare_image

    size = args.image_size
    x = np.stack([prepare_image(data, size) for _, data, _ in images[:64]]).astype("float32")
    y = np.array([label % 4 for _, _, label in images[:64]])
    model = build_model(args.architecture, image_size=size, augment=True, seed=7)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    started = time.perf_counter()
    model.fit(x, y, batch_size=16, epochs=1, steps_per_epoch=args.train_steps, verbose=0)
    path = work / "built" / "model.keras"
    sha256 = artifacts.save_model_atomically(model, path)
    log(
        f"   built {args.architecture} at {size} px, trained {args.train_steps} steps ({time.perf_counter() - started:.0f} s)"
    )
    keras.backend.clear_session()
    return path, sha256


def setup_django_world(model_path, sha256, architecture):
    """Organisations, a clinician with an API token, a patient, and the active ModelVersion."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from datetime import date

    from rest_framework.authtoken.models import Token

    from accounts.models import Organisation, ReferralLink, User
    from cases.models import Patient
    from ml.classes import CLASS_NAMES
    from training.models import ModelVersion

    site = Organisation.objects.create(name="Bench Clinic", kind="referring")
    lab = Organisation.objects.create(name="Bench Laboratory", kind="reading")
    ReferralLink.objects.create(site=site, laboratory=lab)
    clinician = User.objects.create_user(
        username="bench_clinician", password=uuid.uuid4().hex, organisation=site, role="clinician"
    )
    patient = Patient.objects.create(
        organisation=site,
        mrn="BENCH-1",
        given_name="Bench",
        family_name="Patient",
        sex="F",
        date_of_birth=date(2010, 1, 1),
        created_by=clinician,
    )
    token = Token.objects.create(user=clinician).key
    import keras  # noqa: F401 - only to read the input size below

    from ml import artifacts

    model = artifacts.load_model_verified(model_path, sha256)
    metadata_path = Path(model_path).with_name("metadata.json")
    if metadata_path.is_file():
        # Registered as production registers a trained or shipped model: its whole training record
        # (the split lists every file) and its smear check, which the worker then runs on every image.
        from training import registry

        metadata = artifacts.read_json(metadata_path)
        version = registry.register_model(
            {**metadata, "model_path": str(model_path), "output_dir": str(metadata_path.parent)},
            name=f"bench-{metadata.get('architecture', architecture)}",
        )
    else:
        version = ModelVersion.objects.create(
            name=f"bench-{architecture}",
            file_path=str(Path(model_path).resolve()),
            sha256=sha256,
            class_names=list(CLASS_NAMES),
            input_size=int(model.inputs[0].shape[1]),
            architecture=architecture,
        )
    version.activate()
    return {"token": token, "patient": patient.pk, "version": version, "model": model}


# --------------------------------------------------------------------------------------------------
# Processes


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    def __init__(self, name, command, env, log_dir):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self):
        return self.process.poll() is None

    def tail(self, chars=3000):
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self):
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # children left in the group
        except ProcessLookupError:
            pass
        self.log.close()


def server_command(kind, port, workers):
    python = sys.executable
    if kind == "runserver":
        return [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    return [
        python,
        "-m",
        "gunicorn",
        "telediag.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(max(1, workers)),
        "--log-level",
        "warning",
    ]


def start_services(env, work, port, concurrency=1, pinning=None, server_kind="gunicorn", web_workers=2):
    python = sys.executable
    pinning = pinning or Pinning(False)
    server = Service(
        "server", [*pinning.prefix(pinning.web), *server_command(server_kind, port, web_workers)], env, work
    )
    worker_name = f"bench-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    worker = Service(
        "worker",
        [
            *pinning.prefix(pinning.model),
            python,
            "-m",
            "celery",
            "-A",
            "telediag",
            "worker",
            "-Q",
            "inference,default",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "-n",
            worker_name,
            "-l",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
        work,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not server.alive() or not worker.alive():
            raise RuntimeError(f"A service exited:\nserver: {server.tail()}\nworker: {worker.tail()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/")
            connection.getresponse().read()
            break
        except OSError:
            time.sleep(0.3)
    else:
        raise RuntimeError(f"The server did not answer:\n{server.tail()}")
    worker.name = worker_name
    return server, worker


# --------------------------------------------------------------------------------------------------
# The client


def case_submission(patient, files):
    """(content type, body) of one multipart case submission of these (name, bytes) image files."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode()
        for field, value in (("patient", str(patient)), ("priority", "routine"), ("clinical_notes", "bench"))
    ]
    for name, data in files:
        content_type = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


class Client:
    """POST /api/cases/ (multipart, token auth) over one keep-alive connection."""

    minimal = True  # Prefer: return=minimal, as a system uploading many cases would send

    def __init__(self, port, token, patient):
        self.port, self.token, self.patient = port, token, patient
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def submit(self, files):
        """The new case's id; ``files``: its (name, bytes) images."""
        content_type, body = case_submission(self.patient, files)
        headers = {
            "Authorization": f"Token {self.token}",
            "Content-Type": content_type,
            "Accept": "application/json",
        }
        if self.minimal:
            headers["Prefer"] = "return=minimal"
        for attempt in range(2):
            try:
                self.connection.request("POST", "/api/cases/", body=body, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, OSError):
                if attempt:
                    raise
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        if response.status != 201:
            raise RuntimeError(f"Upload refused ({response.status}): {payload[:500]!r}")
        return json.loads(payload)["id"]


def stored_predictions(case_ids):
    """{case id: [(created_at epoch s, total_ms, inference_ms, runtime, heatmap method, job times)]},
    one row per stored prediction of the case's smears.

    Job times (epoch s): enqueued (in the upload's transaction), published (after its commit),
    started (the worker's claim), finished (the job's done update)."""
    from django.db.models import F, Value

    from inference.models import Prediction

    has_runtime = any(f.name == "runtime" for f in Prediction._meta.get_fields())  # older code: no field
    rows = (
        Prediction.objects.filter(smear__case_id__in=case_ids)
        .annotate(runtime_or_keras=F("runtime") if has_runtime else Value("keras"))
        .values_list(
            "smear__case_id",
            "created_at",
            "total_ms",
            "inference_ms",
            "runtime_or_keras",
            "heatmap_method",
            "job__enqueued_at",
            "job__published_at",
            "job__started_at",
            "job__finished_at",
        )
    )
    found = {}
    for row in rows:
        found.setdefault(row[0], []).append(
            (
                row[1].timestamp(),
                row[2],
                row[3],
                row[4],
                row[5],
                tuple(t.timestamp() if t else None for t in row[6:]),
            )
        )
    return found


def case_finished_at(rows):
    """When the last of a case's predictions was stored."""
    return max(row[0] for row in rows)


def failed_jobs(case_ids):
    from inference.models import AnalysisJob

    return list(
        AnalysisJob.objects.filter(smear__case_id__in=case_ids, status="failed").values_list("reason", flat=True)
    )


def wait_for(case_ids, worker, per_case=1, timeout=600, poll_s=0.2):
    """Wait until every case has a prediction for each of its ``per_case`` smears; returns
    stored_predictions()."""
    from django.db import connection

    deadline = time.monotonic() + timeout
    case_ids = list(case_ids)
    while time.monotonic() < deadline:
        found = stored_predictions(case_ids)
        if sum(min(len(rows), per_case) for rows in found.values()) == per_case * len(case_ids):
            return found
        failed = failed_jobs(case_ids)
        if failed:
            raise RuntimeError(f"Analysis failed: {failed[:3]}")
        if not worker.alive():
            raise RuntimeError(f"The worker exited:\n{worker.tail()}")
        time.sleep(poll_s)
        connection.close_if_unusable_or_obsolete()
    missing = per_case * len(case_ids) - sum(len(rows) for rows in found.values())
    raise RuntimeError(f"Timed out waiting for {missing} predictions:\n{worker.tail()}")


def run_sequential(client, uploads, worker):
    latencies, rows = [], []
    started = time.time()
    times = []
    for files in uploads:
        t0 = time.time()
        case_id = client.submit(files)
        times.append(time.time() - t0)
        found = wait_for([case_id], worker, per_case=len(files), poll_s=0.01)[case_id]
        latencies.append(case_finished_at(found) - t0)  # latency comes from the rows' timestamps
        rows.extend(row + (t0,) for row in found)
    return {"latencies_s": latencies, "rows": rows, "span_s": time.time() - started, "uploads_s": times}


def breakdown(rows):
    """Median ms of each stage of a one-at-a-time path: request → job enqueued → published → claimed
    → prediction stored, and the upload request's own duration."""
    stages = {"request→enqueued": [], "enqueued→published": [], "published→claimed": [], "claimed→stored": []}
    for row in rows:
        created, (enqueued, published, started_at, _finished), t0 = row[0], row[5], row[6]
        if None in (enqueued, published, started_at):
            continue
        stages["request→enqueued"].append(enqueued - t0)
        stages["enqueued→published"].append(published - enqueued)
        stages["published→claimed"].append(started_at - published)
        stages["claimed→stored"].append(created - started_at)
    return {k: round(median(v) * 1000, 1) for k, v in stages.items()}


def run_burst(port, token, patient, uploads, worker, threads):
    case_ids, lock = [], threading.Lock()
    starts = {}
    queue = list(uploads)
    errors = []

    def upload():
        client = Client(port, token, patient)
        while True:
            with lock:
                if not queue:
                    return
                files = queue.pop(0)
            t0 = time.time()
            try:
                case_id = client.submit(files)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return
            with lock:
                case_ids.append(case_id)
                starts[case_id] = t0

    first = time.time()
    workers = [threading.Thread(target=upload) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    uploaded = time.time()
    if errors:
        raise RuntimeError(f"Uploads failed: {errors[:3]}")
    found = wait_for(case_ids, worker, per_case=len(uploads[0]))
    return {
        "span_s": max(case_finished_at(rows) for rows in found.values()) - first,
        "upload_s": uploaded - first,
        "latencies_s": [case_finished_at(found[c]) - starts[c] for c in case_ids],
        "rows": [row for rows in found.values() for row in rows],
    }


# --------------------------------------------------------------------------------------------------
# CPU accounting: CPU seconds per image of each part, robust to other processes' load


def tree_cpu_s(pid):
    return Contention._pid_cpu_s(pid)


def named_cpu_s(names=("postgres", "redis-server")):
    """CPU seconds so far of every process with one of these names (shared servers: approximate),
    with their exited children's (a PostgreSQL backend whose connection closed is in the
    postmaster's cutime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                raw = handle.read()
        except OSError:
            continue
        name = raw[raw.find("(") + 1 : raw.rfind(")")]
        if name in names or name.startswith("postgres"):
            parts = raw.rsplit(")", 1)[1].split()
            total += sum(int(value) for value in parts[11:15]) / ticks  # utime stime cutime cstime
    return total


class CpuMeter:
    """CPU seconds used by the server, the worker, this process and the database/broker over a block."""

    def __init__(self, server, worker):
        self.server, self.worker = server, worker

    def snapshot(self):
        own = os.times()
        return {
            "server": tree_cpu_s(self.server.process.pid),
            "worker": tree_cpu_s(self.worker.process.pid),
            "client": own.user + own.system,
            "db+broker": named_cpu_s(),
        }

    def __enter__(self):
        self._start = self.snapshot()
        return self

    def __exit__(self, *exc):
        end = self.snapshot()
        self.used = {k: end[k] - self._start[k] for k in end}
        return False


def run_drain(client, uploads, worker, worker_name):
    """The worker tier alone: uploads while the worker does not consume, then the queue drains.

    Throughput = images / (first claim → last stored prediction); the web tier is idle meanwhile."""
    from telediag.celery import app

    replies = app.control.cancel_consumer("inference", destination=[worker_name], reply=True, timeout=10)
    if not replies:
        raise RuntimeError("The worker did not answer cancel_consumer")
    case_ids = [client.submit(files) for files in uploads]
    time.sleep(0.5)
    app.control.add_consumer("inference", destination=[worker_name], reply=True, timeout=10)
    found = wait_for(case_ids, worker, per_case=len(uploads[0]))
    rows = [row for rows in found.values() for row in rows]
    return {"span_s": max(row[0] for row in rows) - min(row[5][2] for row in rows), "rows": rows}


# --------------------------------------------------------------------------------------------------
# The raw model


def raw_model(model, prepared):
    """Warm predict_on_batch of one image at a time: (images/s, per-image latencies, CPU s per image)."""
    import numpy as np

    latencies = []
    cpu0 = sum(os.times()[:2])
    started = time.perf_counter()
    for image in prepared:
        t0 = time.perf_counter()
        model.predict_on_batch(image[None].astype(np.float32))
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    return len(prepared) / wall, latencies, (sum(os.times()[:2]) - cpu0) / len(prepared)


def raw_batched(model, prepared, batch_size=32):
    import numpy as np

    x = np.asarray(prepared, dtype=np.float32)
    batch_size = min(batch_size, len(x))
    model.predict_on_batch(x[:batch_size])
    started = time.perf_counter()
    done = 0
    for start in range(0, len(x) - batch_size + 1, batch_size):
        model.predict_on_batch(x[start : start + batch_size])
        done += batch_size
    return done / (time.perf_counter() - started)


class _LegacyServing:
    """What the worker did per image before ml.export: predict, then Grad-CAM (for comparisons)."""

    runtime = "keras"
    fallback_reason = "older code: predict_on_batch, then a separate Grad-CAM pass"

    def __init__(self, loaded):
        self.loaded = loaded

    def analyse(self, image):
        import numpy as np

        probabilities = self.loaded.predict(image[None].astype(np.float32))[0]
        return probabilities, self.loaded.heatmap(image, int(np.argmax(probabilities)))[0]


def raw_serving(serving, prepared):
    """(images/s, CPU ms per image) of the worker's runtime alone, one image per call."""
    started, cpu = time.perf_counter(), time.process_time()
    for image in prepared:
        serving.analyse(image)
    return len(prepared) / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / len(prepared)


def image_work(version, serving, images):
    """The worker's per-image work alone, in this process, no Celery, database or storage, as
    ``inference.worker.screen`` does it: decode once and resize for the model, the version's smear
    check (resized from the same decode, features), the serving runtime, the heatmap overlay. {step:
    median ms} and images/s of all steps together: the ceiling of the path's throughput with one core
    (a path that only did this would reach it)."""
    import io

    from PIL import Image

    from ml import heatmaps
    from ml.images import decode_image, prepare_decoded
    from training import gates as smear_gate

    check = smear_gate.check_for(version)
    size = version.input_size
    # The worker reads the smear's size from its row; here from the header, outside the timing.
    original_sizes = [Image.open(io.BytesIO(data)).size for _name, data, _label in images]
    steps = {"decode": [], "smear check": [], "model (runtime)": [], "overlay PNG": []}
    started = time.perf_counter()
    for (_name, data, _label), original_size in zip(images, original_sizes):
        t0 = time.perf_counter()
        decoded = decode_image(data)
        image = prepare_decoded(decoded, size)
        t1 = time.perf_counter()
        if check is not None:
            smear_gate.smear_verdict(version, prepare_decoded(decoded, check.image_size))
        t2 = time.perf_counter()
        _probabilities, cam = serving.analyse(image)
        t3 = time.perf_counter()
        if cam is not None:
            heatmaps.overlay_png(cam, size, original_size)
        t4 = time.perf_counter()
        for key, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            steps[key].append(seconds * 1000)
    ips = len(images) / (time.perf_counter() - started)
    return {key: median(values) for key, values in steps.items()}, ips


# --------------------------------------------------------------------------------------------------


def summarise(m, contention, runtime_used):
    """The numbers, from the measurements ``m`` (medians over rounds)."""
    burst, drain, sequential = m["burst"], m["drain"], m["sequential"]
    n = len(burst["rows"])
    path_ips = n / burst["span_s"]
    drain_ips = len(drain["rows"]) / drain["span_s"]
    raw_ips, serving_ips = m["raw_ips"], m["serving_ips"]
    rows = burst["rows"] + sequential["rows"] + drain["rows"]
    worker_total = [row[1] for row in rows if row[1] is not None]
    worker_model = [row[2] for row in rows if row[2] is not None]
    lat = sequential["latencies_s"]
    cpu_burst = {k: v * 1000 / n for k, v in burst["cpu"].items()}
    cpu_drain = {k: v * 1000 / len(drain["rows"]) for k, v in drain["cpu"].items()}
    return {
        "images": n,
        "runtime": runtime_used,
        "raw": {
            "ips_batch1": raw_ips,
            "latency_ms_median": m["raw_latency_ms"],
            "ips_batch32": m["raw_b32_ips"],
            "cpu_ms_per_image": m["raw_cpu_ms"],
            "serving_ips": serving_ips,
            "serving_cpu_ms_per_image": m["serving_cpu_ms"],
        },
        "path": {
            "throughput_ips": path_ips,
            "burst_span_s": burst["span_s"],
            "burst_upload_s": burst["upload_s"],
            "drain_ips": drain_ips,
            "latency_s_median": median(lat),
            "latency_s_p95": percentile(lat, 95),
            "latency_s_max": max(lat),
            "sequential_ips": len(lat) / sequential["span_s"],
            "burst_latency_s_median": median(burst["latencies_s"]),
            "burst_latency_s_p95": percentile(burst["latencies_s"], 95),
            "worker_total_ms_median": median(worker_total),
            "worker_model_ms_median": median(worker_model),
            "worker_outside_model_ms_median": median([t - w for t, w in zip(worker_total, worker_model)]),
            "upload_request_ms_median": median(sequential["uploads_s"]) * 1000,
            "sequential_stages_ms_median": breakdown(sequential["rows"]),
            "cpu_ms_per_image_burst": cpu_burst,
            "cpu_ms_per_image_drain": cpu_drain,
            # Issue 19's measure: CPU of the web server and the worker per image, less the model's
            # own pass in the worker's runtime (its CPU per image, measured alone in this process).
            "cpu_outside_model_ms_burst": cpu_burst["server"] + cpu_burst["worker"] - m["serving_cpu_ms"],
            "cpu_outside_model_ms_drain": cpu_drain["server"] + cpu_drain["worker"] - m["serving_cpu_ms"],
        },
        "image_work_ms": m["image_work_ms"],
        "image_work_ips": m["image_work_ips"],
        "ratio_image_work_raw": m["image_work_ips"] / raw_ips,
        "ratio_path_raw": path_ips / raw_ips,
        "ratio_drain_raw": drain_ips / raw_ips,
        "ratio_path_raw_batch32": path_ips / m["raw_b32_ips"] if m["raw_b32_ips"] else None,
        # Outside the model: the path's time per image minus the model's own time per image in the
        # runtime the worker uses (probabilities + Grad-CAM, one pass); also vs Keras predict_on_batch.
        "overhead_ms_per_image": 1000.0 / path_ips - 1000.0 / serving_ips,
        "overhead_vs_keras_ms_per_image": 1000.0 / path_ips - 1000.0 / raw_ips,
        "drain_overhead_ms_per_image": 1000.0 / drain_ips - 1000.0 / serving_ips,
        "contention": contention.result,
        "contention_text": contention.describe(),
    }


def _cpu_text(cpu):
    return ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())


def report(summary):
    raw, path = summary["raw"], summary["path"]
    yes = {True: "yes", False: "NO"}
    lines = [
        "",
        "| measure | value |",
        "|---|---|",
        f"| raw model, predict_on_batch (1 image) | {raw['ips_batch1']:.1f} img/s, {raw['latency_ms_median']:.1f} ms "
        f"median, {raw['cpu_ms_per_image']:.0f} ms CPU per image |",
        f"| raw model, predict_on_batch (32 images) | {raw['ips_batch32']:.1f} img/s |",
        f"| worker's runtime ({summary['runtime']}) alone, probabilities + Grad-CAM | {raw['serving_ips']:.1f} img/s |",
        f"| worker's image work alone, in one process (no Celery, database, storage): median ms "
        f"{', '.join(f'{k} {v:.2f}' for k, v in summary['image_work_ms'].items())} | {summary['image_work_ips']:.1f} "
        f"img/s = {summary['ratio_image_work_raw']:.2f} of raw: the ceiling of path / raw |",
        f"| whole path, burst of {summary['images']} (uploads and analysis together) | {path['throughput_ips']:.1f} img/s "
        f"(uploads took {path['burst_upload_s']:.1f} s of {path['burst_span_s']:.1f} s) |",
        f"| worker tier, drain of {summary['images']} queued uploads | {path['drain_ips']:.1f} img/s |",
        f"| path / raw throughput | burst {summary['ratio_path_raw']:.2f}, drain {summary['ratio_drain_raw']:.2f} "
        f"(burst vs raw batch 32: {summary['ratio_path_raw_batch32'] or 0:.2f}) |",
        f"| overhead per image outside the model (time per image − runtime's time per image) | burst "
        f"{summary['overhead_ms_per_image']:.1f} ms, drain {summary['drain_overhead_ms_per_image']:.1f} ms "
        f"(burst vs Keras predict_on_batch: {summary['overhead_vs_keras_ms_per_image']:.1f} ms) |",
        f"| latency upload → stored prediction, one at a time | median {path['latency_s_median'] * 1000:.0f} ms, "
        f"p95 {path['latency_s_p95'] * 1000:.0f} ms, max {path['latency_s_max'] * 1000:.0f} ms |",
        f"| one at a time: upload request (client-side) | {path['upload_request_ms_median']:.0f} ms median |",
        f"| one at a time: stages, median ms | {path['sequential_stages_ms_median']} |",
        f"| inside the task (Prediction.total_ms / inference_ms) | {path['worker_total_ms_median']:.0f} ms / "
        f"{path['worker_model_ms_median']:.0f} ms (outside the model {path['worker_outside_model_ms_median']:.0f} ms) |",
        f"| CPU ms per image, burst | {_cpu_text(path['cpu_ms_per_image_burst'])} |",
        f"| CPU ms per image, drain | {_cpu_text(path['cpu_ms_per_image_drain'])} |",
        f"| CPU ms per image outside the model (web server + worker − the runtime's "
        f"{raw['serving_cpu_ms_per_image']:.1f} ms) | burst {path['cpu_outside_model_ms_burst']:.1f}, "
        f"drain {path['cpu_outside_model_ms_drain']:.1f} |",
        f"| latency in the burst (queueing included) | median {path['burst_latency_s_median']:.1f} s, "
        f"p95 {path['burst_latency_s_p95']:.1f} s |",
        "",
        f"CPUs: {summary['pinning']}; web server: {summary['server']}; 201 answers: {summary['responses']}; "
        f"images per upload: {summary['per_upload']}",
        f"Contention: {summary['contention_text']}",
        f"Targets: path/raw ≥ {TARGET_RATIO}: burst {yes[summary['ratio_path_raw'] >= TARGET_RATIO]}, drain "
        f"{yes[summary['ratio_drain_raw'] >= TARGET_RATIO]}; overhead < {TARGET_OVERHEAD_MS:.0f} ms: burst "
        f"{yes[summary['overhead_ms_per_image'] < TARGET_OVERHEAD_MS]}, drain "
        f"{yes[summary['drain_overhead_ms_per_image'] < TARGET_OVERHEAD_MS]}; p95 < {TARGET_P95_S:.0f} s: "
        f"{yes[path['latency_s_p95'] < TARGET_P95_S]}; CPU outside the model ≤ {TARGET_CPU_OUTSIDE_MS:.0f} ms: "
        f"burst {yes[path['cpu_outside_model_ms_burst'] <= TARGET_CPU_OUTSIDE_MS]}, drain "
        f"{yes[path['cpu_outside_model_ms_drain'] <= TARGET_CPU_OUTSIDE_MS]}",
    ]
    return "\n".join(lines)


def _smear_check_summary(version):
    """Whether the worker ran the version's smear check, and how many uploads it flagged (those skip
    the model, so many flags would flatter the path)."""
    from inference.models import Prediction

    if not version.smear_check:
        return "off (the model file has no metadata.json with one)"
    flagged = Prediction.objects.filter(is_smear=False).count()
    return f"on, {flagged} of {Prediction.objects.count()} uploads flagged as not a smear"


def _median_run(runs):
    return sorted(runs, key=lambda run: run["span_s"])[len(runs) // 2]


def main(argv=None):
    args = parse_args(argv)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-path-"))
    Client.minimal = not args.full_response
    pinning = Pinning(args.pin)
    if pinning.enabled and args.concurrency != 1:
        raise SystemExit("--pin runs one worker child on the model's core: use --concurrency 1")
    env = prepare_environment(args, work, pinning)
    # Before TensorFlow starts its thread pools: they stay on the model's core(s), and TensorFlow sizes
    # them from this affinity, so the raw model gets the cores the worker gets (all of them unpinned).
    pinning.enter(pinning.model)
    log(
        f"Inference path benchmark: {machine_line()}; work folder {work}; worker -c {args.concurrency} x "
        f"{env['TELEDIAG_TF_INTRA_OP_THREADS']} model thread(s), runtime {args.runtime}; {pinning.describe()}"
    )
    for share, nice, cmd in top_other_processes():
        log(f"   busy at start: {share:.0%} CPU (nice {nice}): {cmd}")

    if args.per_upload < 1 or args.images % args.per_upload:
        raise SystemExit("--images must be a multiple of --per-upload")
    images, source, data_root = load_real_images(args.data, args.images, args.image_size)
    uploads = [
        [(name, data) for name, data, _ in images[i : i + args.per_upload]]
        for i in range(0, len(images), args.per_upload)
    ]
    log(f"   {len(images)} {source} images from {data_root}, {args.per_upload} per upload")
    if args.model_file:
        from ml import artifacts

        model_path = Path(args.model_file).resolve()
        sha256 = artifacts.sha256_file(model_path)
        architecture = args.architecture
    else:
        model_path, sha256 = build_model_file(args, work, images)
        architecture = args.architecture

    recreate_database(args)
    empty_broker(args.redis)
    world = setup_django_world(model_path, sha256, architecture)
    model, version = world["model"], world["version"]
    size = version.input_size
    log(f"   database {args.db} migrated; model {version.name} ({size} px, sha256 {sha256[:12]}…)")

    import numpy as np

    from ml.images import prepare_image

    prepared = np.stack([prepare_image(data, size) for _, data, _ in images])
    raw_model(model, prepared[:10])  # warm
    raw_batched(model, prepared[:64])
    from inference import worker as worker_module

    if hasattr(worker_module, "_load_serving"):
        serving = worker_module._load_serving(version, model)  # what the worker will use (exports if needed)
    else:  # the code before the serving runtime: predict_on_batch, then a Grad-CAM pass
        serving = _LegacyServing(worker_module.LoadedModel(version, model))
    serving.analyse(prepared[0])
    log(
        f"   worker runtime: {serving.runtime}{' (' + serving.fallback_reason + ')' if serving.fallback_reason else ''}"
    )

    port = free_port()
    server, worker = start_services(env, work, port, args.concurrency, pinning, args.server, args.client_threads)
    try:
        pinning.enter(pinning.web)
        client = Client(port, world["token"], world["patient"])
        warm = time.perf_counter()
        warm_ids = [client.submit([(name, data)]) for name, data, _ in images[: 3 * args.concurrency]]
        wait_for(warm_ids, worker, timeout=300, poll_s=0.05)  # every worker child loads the model
        log(f"   services warm ({time.perf_counter() - warm:.1f} s); measuring...")

        raw_ips, raw_lat, raw_cpu, raw_b32, serving_ips, serving_cpu, work_ips = [], [], [], [], [], [], []
        runs = {"sequential": [], "burst": [], "drain": []}
        with Contention(extra_pids=[server.process.pid, worker.process.pid]) as contention:
            for _round in range(args.rounds):
                for step in ("raw", "sequential", "raw", "burst", "raw", "drain", "raw"):
                    pinning.enter(pinning.model if step == "raw" else pinning.web)
                    if step == "raw":
                        ips, lat, cpu = raw_model(model, prepared)
                        raw_ips.append(ips)
                        raw_lat.extend(lat)
                        raw_cpu.append(cpu * 1000)
                        raw_b32.append(raw_batched(model, prepared))
                        ips_serving, cpu_serving = raw_serving(serving, prepared)
                        serving_ips.append(ips_serving)
                        serving_cpu.append(cpu_serving)
                        work_ms, ips_work = image_work(version, serving, images)
                        work_ips.append(ips_work)
                        log(
                            f"   raw: {ips:.1f} img/s (batch 32: {raw_b32[-1]:.1f}; {serving.runtime}: "
                            f"{serving_ips[-1]:.1f})"
                        )
                        continue
                    with CpuMeter(server, worker) as meter:
                        if step == "sequential":
                            run = run_sequential(client, uploads, worker)
                        elif step == "burst":
                            run = run_burst(
                                port, world["token"], world["patient"], uploads, worker, args.client_threads
                            )
                        else:
                            run = run_drain(client, uploads, worker, worker.name)
                    run["cpu"] = meter.used
                    runs[step].append(run)
                    if step == "sequential":
                        lat = run["latencies_s"]
                        log(
                            f"   sequential: median {median(lat) * 1000:.0f} ms, p95 {percentile(lat, 95) * 1000:.0f} ms"
                        )
                    else:
                        log(
                            f"   {step}: {len(images) / run['span_s']:.1f} img/s; CPU ms per image: "
                            f"{_cpu_text({k: v * 1000 / len(images) for k, v in meter.used.items()})}"
                        )
        sequential = {
            "latencies_s": [v for run in runs["sequential"] for v in run["latencies_s"]],
            "rows": [v for run in runs["sequential"] for v in run["rows"]],
            "span_s": sum(run["span_s"] for run in runs["sequential"]),
            "uploads_s": [v for run in runs["sequential"] for v in run["uploads_s"]],
        }
        measurements = {
            "raw_ips": median(raw_ips),
            "raw_latency_ms": median(raw_lat) * 1000,
            "raw_cpu_ms": median(raw_cpu),
            "raw_b32_ips": median(raw_b32),
            "serving_ips": median(serving_ips),
            "serving_cpu_ms": median(serving_cpu),
            "image_work_ms": work_ms,
            "image_work_ips": median(work_ips),
            "sequential": sequential,
            "burst": _median_run(runs["burst"]),
            "drain": _median_run(runs["drain"]),
        }
        rows = sequential["rows"] + measurements["burst"]["rows"] + measurements["drain"]["rows"]
        summary = summarise(measurements, contention, ",".join(sorted({row[3] for row in rows} - {""})))
        summary["heatmap_methods"] = sorted({row[4] for row in rows})
        summary["smear_check"] = _smear_check_summary(version)
        summary["pinning"] = pinning.describe()
        summary["server"] = args.server
        summary["per_upload"] = args.per_upload
        summary["responses"] = "whole case" if args.full_response else "Prefer: return=minimal"
    finally:
        worker.stop()
        server.stop()
        empty_broker(args.redis)
    log(report(summary))
    log(f"Heatmap stored with every prediction: {summary['heatmap_methods']}")
    log(f"Smear check: {summary['smear_check']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_line(), "summary": summary}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

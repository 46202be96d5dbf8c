"""A whole Telediag on loopback, as the README runs it, with a handle on every part to break.

PostgreSQL cluster, broker (Redis or a RabbitMQ node), ``gunicorn telediag.wsgi:application``,
``celery -A telediag worker`` (prefork, real model) and ``celery -A telediag beat``, each a process
of its own with its own log under the stack's folder. Media can live on a small tmpfs (as root) so
that the disk can be filled.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from reliability.servers import PostgresCluster, RabbitMQNode, RedisServer, ServerError, free_port

ROOT = Path(__file__).resolve().parent.parent


class Process:
    def __init__(self, name, command, env, log_dir):
        self.name, self.command, self.env = name, command, env
        self.log_path = Path(log_dir) / f"{name}.log"
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def children(self):
        if not self.alive():
            return []
        found = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in found.split()]

    def kill(self):
        """SIGKILL the whole process group (the parent and every child)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def stop(self, timeout=15):
        if not self.alive():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def tail(self, chars=3000):
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Stack:
    def __init__(
        self,
        broker="redis",
        root=None,
        web_workers=2,
        workers=2,
        concurrency=1,
        media_mb=None,
        patients=20,
        log=print,
        keep=False,
    ):
        self.broker_kind = broker
        self.root = Path(root or tempfile.mkdtemp(prefix="telediag-faults-"))
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # PostgreSQL and RabbitMQ run as their own users below it
        self.keep = keep
        self.web_workers, self.concurrency, self.media_mb, self.patients = web_workers, concurrency, media_mb, patients
        self.log = log
        self.pg = self.broker = self.web = self.beat = None
        self.workers = [None] * workers  # worker processes, as on separate nodes
        self.media = self.root / "media"
        self.media_mounted = False
        self.port = free_port()
        self.worker_count = 0

    # --- Start and stop -------------------------------------------------------------------------

    def start(self):
        started = time.monotonic()
        self.pg = PostgresCluster(self.root / "pg").start()
        self.database_url = self.pg.create_database("telediag")
        if self.broker_kind == "redis":
            self.broker = RedisServer(self.root / "redis").start()
        elif self.broker_kind == "rabbitmq":
            self.broker = RabbitMQNode(self.root / "rabbitmq").start()
        else:
            raise ValueError(f"unknown broker {self.broker_kind!r}")
        self._mount_media()
        self.env = self._environment()
        self._manage("migrate", "--noinput", "-v", "0")
        seeded = subprocess.run(
            [sys.executable, "-m", "reliability.seed", str(self.patients)],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        world = json.loads(seeded.stdout.strip().splitlines()[-1])
        self.token, self.patient_ids = world["token"], world["patients"]
        self.start_web()
        for index in range(len(self.workers)):
            self.start_worker(index)
        self.beat = Process(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "telediag",
                "beat",
                "-l",
                "INFO",
                "-s",
                str(self.root / "celerybeat-schedule"),
            ],
            self.env,
            self.root,
        ).start()
        self.wait_for_web()
        self.log(f"stack up in {time.monotonic() - started:.0f} s: {self.base_url} ({self.broker_kind}), {self.root}")
        return self

    def warm_up(self, images, timeout_s=300):
        """One case per worker child, analysed before any scenario: each child loads the model on its
        first job (tens of seconds on a busy CPU), which is start-up, not recovery."""
        from reliability.scenarios import wait_analysed

        started = time.monotonic()
        case_ids = []
        for index in range(len(self.workers) * self.concurrency * 2):
            answer = requests.post(
                f"{self.base_url}/api/cases/",
                headers={"Authorization": f"Token {self.token}"},
                data={"patient": self.patient_ids[0], "clinical_notes": "warm-up"},
                files=[("images", images[index % len(images)])],
                timeout=60,
            )
            answer.raise_for_status()
            case_ids.append(answer.json()["id"])
        if not wait_analysed(self, case_ids, timeout_s=timeout_s):
            raise ServerError(f"the worker did not analyse the warm-up cases:\n{self.worker.tail()}")
        self.log(f"workers warm in {time.monotonic() - started:.0f} s")

    def _environment(self):
        (self.root / "var").mkdir(exist_ok=True)
        (self.root / "static").mkdir(exist_ok=True)
        broker_url = self.broker.url()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TELEDIAG_", "CELERY_", "DATABASE_URL", "DJANGO_"))
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "telediag.settings",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "DEBUG": "false",
                "TELEDIAG_HTTPS": "false",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DATABASE_URL": self.database_url,
                "CELERY_BROKER_URL": broker_url,
                "MEDIA_ROOT": str(self.media),
                "STATIC_ROOT": str(self.root / "static"),
                "TELEDIAG_VAR_DIR": str(self.root / "var"),
                "TELEDIAG_TF_INTRA_OP_THREADS": "1",
                "TELEDIAG_TF_INTER_OP_THREADS": "1",
                "CUDA_VISIBLE_DEVICES": "",
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _manage(self, *args):
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, stdout=subprocess.DEVNULL
        )

    def _mount_media(self):
        self.media.mkdir(parents=True, exist_ok=True)
        if not self.media_mb:
            return
        if os.geteuid() != 0:
            self.log("media: not root, no tmpfs; the disk-full fault is skipped")
            return
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.media_mb}m,mode=0777", "tmpfs", str(self.media)],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            self.media_mounted = True
        else:
            self.log(f"media: tmpfs refused ({result.stderr.strip()}); the disk-full fault is skipped")

    def stop(self):
        for process in (self.beat, *self.workers, self.web):
            if process is not None:
                process.stop()
        for server in (self.broker, self.pg):
            if server is not None:
                server.remove()
        if self.media_mounted:
            subprocess.run(["umount", "-l", str(self.media)], check=False)
            self.media_mounted = False
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    # --- Parts ----------------------------------------------------------------------------------

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def start_web(self):
        # The README's production command, bound to loopback on a free port.
        self.web = Process(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "telediag.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.web_workers),
                "--timeout",
                "30",
            ],
            self.env,
            self.root,
        ).start()
        return self.web

    def wait_for_web(self, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = requests.get(
                    f"{self.base_url}/api/cases/?page_size=1",
                    timeout=3,
                    headers={"Authorization": f"Token {self.token}"},
                )
                if answer.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if not self.web.alive():
                raise ServerError(f"gunicorn exited:\n{self.web.tail()}")
            time.sleep(0.3)
        raise ServerError(f"the web server does not answer after {timeout} s:\n{self.web.tail()}")

    def start_worker(self, index=0):
        """Worker ``index`` (a node of its own: own name, own pool of ``concurrency`` children)."""
        self.worker_count += 1
        self.workers[index] = Process(
            f"worker-{index}-{self.worker_count}",
            [
                sys.executable,
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
                str(self.concurrency),
                "-n",
                f"faults-{index}-{self.worker_count}@%h",
                "-l",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            self.env,
            self.root,
        ).start()
        return self.workers[index]

    @property
    def worker(self):
        return self.workers[0]

    # --- Faults ---------------------------------------------------------------------------------

    def kill_worker_child(self):
        children = self.worker.children()
        if children:
            os.kill(children[0], signal.SIGKILL)
        return bool(children)

    def kill_worker(self):
        self.worker.kill()

    def kill_web(self):
        self.web.kill()

    def fill_media(self):
        """Fill the media tmpfs to the last byte (a full disk): unbuffered writes until ENOSPC."""
        for name, size in ((".filler", 1 << 20), (".filler2", 4096), (".filler3", 1)):
            descriptor = os.open(self.media / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError:
                pass
            finally:
                os.close(descriptor)

    def free_media(self):
        for name in (".filler", ".filler2", ".filler3"):
            try:
                (self.media / name).unlink()
            except FileNotFoundError:
                pass

    def db(self):
        import psycopg2

        connection = psycopg2.connect(self.database_url)
        connection.autocommit = True
        return connection

"""Throw-away PostgreSQL, Redis and RabbitMQ servers on loopback, for fault injection.

Each server listens on 127.0.0.1 on a free port chosen at start, keeps its data in a folder of its
own, and can be paused (SIGSTOP: it accepts connections and answers nothing), resumed, killed and
started again, empty or not. Nothing here touches the machine's shared services.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class ServerError(RuntimeError):
    pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=30.0, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(f"the server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ServerError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


class _Server:
    """A child process with its own session (so its whole group can be signalled)."""

    name = "server"

    def __init__(self, root=None):
        self.root = Path(root or tempfile.mkdtemp(prefix=f"telediag-{self.name}-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = None

    def _spawn(self, command, **kwargs):
        log = open(self.root / f"{self.name}.log", "ab")
        if os.geteuid() == 0 and kwargs.get("user"):
            shutil.chown(self.root / f"{self.name}.log", kwargs["user"], kwargs.get("group"))
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        log.close()
        return self.process

    def signal(self, signum):
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def pause(self):
        """SIGSTOP: connections are still accepted by the kernel; nothing is answered."""
        self.signal(signal.SIGSTOP)

    def resume(self):
        self.signal(signal.SIGCONT)

    def kill(self):
        """SIGKILL, as a crash or an out-of-memory kill would."""
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def remove(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.remove()


class RedisServer(_Server):
    name = "redis"

    def start(self, empty=False):
        data = self.root / "data"
        if empty:
            shutil.rmtree(data, ignore_errors=True)
        data.mkdir(exist_ok=True)
        self._spawn(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ]
        )
        wait_for_port(self.port, process=self.process)
        return self

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def restart_empty(self):
        """Killed and started again with nothing in it (no persistence): every message is gone."""
        self.kill()
        return self.start(empty=True)


def _postgres_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if found:
        return found[0]
    if shutil.which(name):
        return shutil.which(name)
    raise ServerError(f"PostgreSQL's {name} is not installed")


class PostgresCluster(_Server):
    """initdb into a folder of its own, trust auth for ``postgres`` on 127.0.0.1 only.

    PostgreSQL refuses to run as root: as root, the cluster runs as the ``postgres`` user.
    """

    name = "postgres"

    def _as_owner(self):
        """Popen arguments that run a program as ``postgres`` when we are root (exec, no wrapper
        process, so signals reach postgres itself)."""
        if os.geteuid() != 0:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def start(self):
        data = self.root / "data"
        if not (data / "PG_VERSION").exists():
            if os.geteuid() == 0:
                shutil.chown(self.root, "postgres", "postgres")
            done = subprocess.run(
                [_postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                cwd=self.root,
                **self._as_owner(),
            )
            if done.returncode:
                raise ServerError(f"initdb failed: {done.stderr.strip()}")
        self._spawn(
            [
                _postgres_bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
            ],
            cwd=self.root,
            **self._as_owner(),
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"postgres exited with {self.process.returncode}; see {self.root}/postgres.log")
            ready = subprocess.run(
                [_postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise ServerError(f"postgres is not ready on {self.port} after {timeout:.0f} s")

    def stop(self):
        """A fast shutdown (SIGINT): what ``pg_ctl stop -m fast`` sends."""
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart_fast(self, down_s=0.0):
        """``pg_ctl restart -m fast``: every connection is closed; down for ``down_s`` seconds."""
        self.stop()
        time.sleep(down_s)
        return self.start()

    def url(self, database="postgres"):
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name):
        subprocess.run(
            [_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self.url(name)


class RabbitMQNode(_Server):
    """A RabbitMQ node of its own (its own node name, port, distribution port and data folder)."""

    name = "rabbitmq"

    def __init__(self, root=None):
        super().__init__(root)
        self.dist_port = free_port()
        self.node = f"telediag-{self.port}@localhost"

    def _env(self):
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_listen_min {0} -kernel inet_dist_listen_max {0}".format(
                self.dist_port
            ),
        }

    def start(self, empty=False, timeout=120.0):
        if empty:
            shutil.rmtree(self.root / "mnesia", ignore_errors=True)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text("loopback_users = none\n")
        (self.root / "advanced.config").write_text("[].\n")
        if os.geteuid() == 0 and shutil.which("runuser"):
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.root)], check=False)
            command = ["runuser", "-u", "rabbitmq", "--", "/usr/lib/rabbitmq/bin/rabbitmq-server"]
        else:
            command = [shutil.which("rabbitmq-server") or "rabbitmq-server"]
        self._spawn(command, env=self._env())
        wait_for_port(self.port, timeout=timeout, process=self.process)
        return self

    def url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def restart_empty(self):
        self.kill()
        return self.start(empty=True)

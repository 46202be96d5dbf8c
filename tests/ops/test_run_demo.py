"""`make run`'s supervisor (telediag.run_demo), for real: two Celery workers and runserver, then a stop.

It must stop within a bound on one SIGTERM (what `make` forwards) or SIGINT (Ctrl-C), leave no
process behind, exit 0, and log a worker's shutdown once, not thousands of times.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ops.conftest import ROOT, free_port, http_get

READY_S = 180  # two workers and a server starting on a busy machine
STOP_BOUND_S = 30  # the supervisor's grace (10 s here) plus the kill and some slack


def descendants(pid):
    """Every process below ``pid`` (children, their pool processes, beat...)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_demo_stops_cleanly_on_one_signal(tmp_path, signum):
    port = free_port()
    env = {
        **os.environ,
        "TELEDIAG_DEMO": "true",
        "TELEDIAG_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "telediag.settings",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)  # the embedded demo: SQLite and a filesystem broker under var/
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "telediag.run_demo", "--host", "127.0.0.1", "--port", str(port), "--grace", "10"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # as make's process group: the test signals the supervisor only
        )
    try:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            server_up = False
            try:
                server_up = http_get(f"http://127.0.0.1:{port}/healthz", timeout=2)[0] > 0
            except OSError:
                pass
            if server_up and text.count(" ready.") >= 2:
                break
            assert supervisor.poll() is None, text[-3000:]
            time.sleep(1)
        else:
            pytest.fail("the demo did not start:\n" + log_path.read_text(errors="replace")[-3000:])
        processes = descendants(supervisor.pid)
        assert len(processes) >= 3  # two workers (and their pool and beat processes) and the server

        started = time.monotonic()
        supervisor.send_signal(signum)
        returncode = supervisor.wait(timeout=STOP_BOUND_S)
        took = time.monotonic() - started
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()
    text = log_path.read_text(errors="replace")
    assert returncode == 0, text[-3000:]
    assert took < STOP_BOUND_S
    time.sleep(0.5)
    assert [pid for pid in processes if alive(pid)] == [], text[-3000:]
    shutdowns = text.count("Warm shutdown") + text.count("Cold shutdown")
    assert 1 <= shutdowns <= 4, f"{shutdowns} shutdown lines:\n{text[-3000:]}"
    assert "[run] stopped" in text
    print(f"stopped in {took:.1f} s, {shutdowns} shutdown lines")

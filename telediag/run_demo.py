"""``make run``'s process supervisor: two Celery workers and the development server, stopped cleanly.

    python -m telediag.run_demo [--host 127.0.0.1] [--port 8000] [--grace 20]

Each child runs in its own session (process group), so a Ctrl-C in the terminal reaches this
supervisor only; it forwards ONE SIGTERM to each child (a Celery worker's warm shutdown: it
finishes its current task), waits up to ``--grace`` seconds, then kills what is left, process
group and all, and exits 0. A second Ctrl-C or SIGTERM skips the wait. A child that dies on its
own stops the others too, and the supervisor exits 1.

A shell ``trap 'kill 0' INT TERM EXIT`` did this before: ``kill 0`` signals its own process group,
which re-ran the trap, over and over, so the workers logged "Warm shutdown" thousands of times.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
POLL_S = 0.2


def demo_commands(host, port, *, python=sys.executable):
    """(name, argv) of every child: the inference worker (with beat), the training worker, the portal."""
    celery = [python, "-m", "celery", "-A", "telediag", "worker", "-c", "1", "-l", "info"]
    var_dir = Path(os.environ.get("TELEDIAG_VAR_DIR", BASE_DIR / "var"))
    return [
        (
            "inference worker",
            [
                *celery,
                "-B",
                "-Q",
                "inference,default",
                "-n",
                "inference@%h",
                "-s",
                str(var_dir / "celerybeat-schedule"),
            ],
        ),
        ("training worker", [*celery, "-Q", "training", "-n", "training@%h"]),
        ("portal", [python, "manage.py", "runserver", "--noreload", f"{host}:{port}"]),
    ]


class Supervisor:
    def __init__(self, commands, *, grace_s, out=sys.stderr):
        self.commands = commands
        self.grace_s = grace_s
        self.out = out
        self.children = []  # (name, Popen)
        self.stop_requests = 0

    def say(self, message):
        print(f"[run] {message}", file=self.out, flush=True)

    def request_stop(self, signum, _frame):
        # Only count here: the main loop does the work (a handler must not re-enter it).
        self.stop_requests += 1

    def start(self):
        for name, argv in self.commands:
            child = subprocess.Popen(argv, cwd=BASE_DIR, start_new_session=True)
            self.children.append((name, child))
            self.say(f"started {name} (pid {child.pid})")

    def run(self):
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.request_stop)
        self.start()
        crashed = None
        while not self.stop_requests:
            crashed = next(((name, child) for name, child in self.children if child.poll() is not None), None)
            if crashed:
                self.say(f"{crashed[0]} exited with status {crashed[1].returncode}; stopping the others")
                break
            time.sleep(POLL_S)
        self.stop()
        return 1 if crashed else 0

    def stop(self):
        self.say(f"stopping: up to {self.grace_s:g} s for the workers to finish their current task")
        for name, child in self.children:
            if child.poll() is None:
                self._signal(child, signal.SIGTERM, group=False)
        requests = self.stop_requests
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and self.stop_requests <= requests:
            if all(child.poll() is not None for _, child in self.children):
                break
            time.sleep(POLL_S)
        for name, child in self.children:
            # Whatever is left in a child's process group (its pool processes, its beat) goes too.
            if child.poll() is None:
                self.say(f"{name} did not stop in time: killed")
            self._signal(child, signal.SIGKILL, group=True)
            child.wait()
        self.say("stopped")

    @staticmethod
    def _signal(child, signum, *, group):
        try:
            if group:
                os.killpg(child.pid, signum)  # the child's own session: its pid is the group id
            else:
                child.send_signal(signum)
        except ProcessLookupError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="8000")
    parser.add_argument("--grace", type=float, default=20.0, help="seconds the children get to stop (default 20)")
    args = parser.parse_args(argv)
    supervisor = Supervisor(demo_commands(args.host, args.port), grace_s=args.grace)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())

"""A worker's heartbeat file, for a container health check that needs no broker round trip.

A consumer bootstep touches TELEDIAG_WORKER_HEARTBEAT_FILE every TELEDIAG_WORKER_HEARTBEAT_S
seconds while the worker's consumer runs, that is while it is connected to the broker and taking
tasks; when the connection is lost Celery stops the consumer's steps and the file goes stale.

    python -m ops.heartbeat FILE --max-age 60     # exit 0: fresh; 1: stale or missing

The check starts no Django and opens no connection: it is cheap enough to run every few seconds.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from celery import bootsteps


def touch(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{time.time():.3f} {os.getpid()}\n")
    os.replace(tmp, path)


class Heartbeat(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        from django.conf import settings

        self.path = getattr(settings, "WORKER_HEARTBEAT_FILE", "")
        self.interval = float(getattr(settings, "WORKER_HEARTBEAT_S", 10.0))
        self.tref = None

    def start(self, consumer):
        if not self.path:
            return
        touch(self.path)
        self.tref = consumer.timer.call_repeatedly(self.interval, touch, (self.path,), priority=10)

    def stop(self, consumer):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def shutdown(self, consumer):
        self.stop(consumer)
        if self.path:
            Path(self.path).unlink(missing_ok=True)


def age(path):
    """Seconds since the heartbeat file was written, or None when it is missing."""
    try:
        return max(0.0, time.time() - Path(path).stat().st_mtime)
    except FileNotFoundError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Exit 0 when the worker's heartbeat file is fresh.")
    parser.add_argument("file", nargs="?", default=os.environ.get("TELEDIAG_WORKER_HEARTBEAT_FILE", ""))
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    if not args.file:
        print("No heartbeat file given (argument or TELEDIAG_WORKER_HEARTBEAT_FILE).", file=sys.stderr)
        return 2
    seconds = age(args.file)
    if seconds is None:
        print(f"unhealthy: {args.file} is missing", file=sys.stderr)
        return 1
    if seconds > args.max_age:
        print(f"unhealthy: last heartbeat {seconds:.0f} s ago (> {args.max_age:g} s)", file=sys.stderr)
        return 1
    print(f"healthy: last heartbeat {seconds:.1f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())

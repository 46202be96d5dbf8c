"""Leases on running analysis jobs: a worker that vanishes loses its job within seconds.

A claim sets ``lease_expires_at`` to now + ``INFERENCE_LEASE_S`` (in the claim's own UPDATE, no
extra query). While the job runs, a thread of the worker process renews the lease every quarter of
it, so a job that runs long (a model loading on a child's first job) keeps it. A worker that dies
(SIGKILL, out of memory, its machine gone) stops renewing: the sweeper queues the job again once the
lease has expired (``inference.services.sweep``), instead of waiting for the hard time limit.
Inference itself takes tens of milliseconds: most jobs end before their first renewal.

The renewal is conditional on the job still being held by the same message (status running and the
claiming task id), so it never revives a job someone else took over. A database that is away makes a
renewal fail quietly; the next one tries again.
"""

import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)


def lease_s():
    return max(2.0, float(getattr(settings, "INFERENCE_LEASE_S", 20)))


def expiry(now=None):
    """When a lease taken (or renewed) now runs out."""
    return (now or timezone.now()) + timedelta(seconds=lease_s())


class _Keeper:
    """One daemon thread per process renewing the leases of the jobs this process runs."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held = {}  # job id -> (task id, monotonic time of the last renewal)
        self._thread = None
        self._pid = None
        self._wake = threading.Event()

    def hold(self, job_id, task_id):
        import os

        with self._lock:
            self._held[job_id] = (task_id, time.monotonic())
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()  # a forked child starts its own thread
                self._thread = threading.Thread(target=self._run, name="analysis-lease", daemon=True)
                self._thread.start()

    def release(self, job_id):
        with self._lock:
            self._held.pop(job_id, None)

    def _due(self):
        interval = lease_s() / 4
        now = time.monotonic()
        with self._lock:
            return [(job_id, task_id) for job_id, (task_id, last) in self._held.items() if now - last >= interval]

    def _run(self):
        while True:
            self._wake.wait(lease_s() / 8)
            due = self._due()
            if due:
                self._renew(due)

    def _renew(self, due):
        from inference.models import AnalysisJob

        for job_id, task_id in due:
            try:
                now = timezone.now()
                AnalysisJob.objects.filter(pk=job_id, status=AnalysisJob.Status.RUNNING, task_id=task_id).update(
                    lease_expires_at=expiry(now),
                    updated_at=now,
                )
            except Exception as exc:  # noqa: BLE001 - database away: the next round tries again
                logger.warning("Could not renew the lease of analysis job %s: %s", job_id, exc)
                connection.close()
                continue
            with self._lock:
                if job_id in self._held:
                    self._held[job_id] = (task_id, time.monotonic())
        connection.close()  # this thread's own connection: renewals are rare, keep none open


_keeper = _Keeper()


@contextmanager
def held(job):
    """Keep the lease of a claimed job renewed while the block runs."""
    _keeper.hold(job.pk, job.task_id)
    try:
        yield
    finally:
        _keeper.release(job.pk)

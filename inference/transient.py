"""A database that is briefly away (a restart, a failover) is not a reason to fail an analysis.

``retrying(step, ...)`` runs one step of a job (claim, analysis, status moves); when the database
connection breaks it closes the connection, waits (0.5 s doubling to 5 s) and runs the step again,
for up to ``DB_RETRY_S`` seconds. Every step is safe to run again: the claim and the moves are
conditional updates, and a Prediction is stored once per smear and version. Past the budget the
error goes up: the job stays running and, its lease no longer renewed, the sweeper hands it to
another worker (``inference.leases``). Inside a transaction the step is not retried here: that
transaction is gone and its owner decides.
"""

import logging
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

# psycopg2's "server closed the connection unexpectedly", "terminating connection due to
# administrator command" and "connection already closed" all arrive as one of these.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


def budget_s():
    return max(0.0, float(getattr(settings, "DB_RETRY_S", 60.0)))


def retrying(step, *args, **kwargs):
    deadline = time.monotonic() + budget_s()
    delay = 0.5
    while True:
        try:
            return step(*args, **kwargs)
        except TRANSIENT_ERRORS as exc:
            if connection.in_atomic_block or time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "Database unavailable during %s (%s: %s); retrying in %.1f s.",
                getattr(step, "__name__", step),
                type(exc).__name__,
                exc,
                delay,
            )
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                logger.debug("Closing the broken connection failed", exc_info=True)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

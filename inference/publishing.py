"""Handing analysis jobs to the broker in bounded time, and knowing how many messages wait there.

The job row is the source of truth; a message only wakes a worker up. So a publish may fail, but
it must never hold up the request (or the sweeper) that makes it:

- **Bounded.** Publisher connections get their own socket timeouts (``BROKER_PUBLISH_TIMEOUT_S``
  for connecting, reading and writing; for RabbitMQ also the publisher-confirm wait), so a broker
  that accepts connections but answers nothing (a stopped Redis, a hung node) costs at most a few
  times that, never the web server's worker timeout.
- **Backed off.** After a failure this process does not try again for ``BROKER_PUBLISH_BACKOFF_S``
  (a circuit breaker): the requests in between record "not published" on their jobs at once, and
  the sweeper publishes them once the broker answers again.
- **Counted.** ``queue_depth`` asks the broker how many messages wait in a queue (Redis: the
  list's length; RabbitMQ: the ready messages of a passive declare), so the sweeper re-publishes
  only what the broker cannot hold (``inference.services.sweep``).
"""

import logging
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)

_AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
_REDIS_SCHEMES = ("redis", "rediss", "sentinel", "socket")


def publish_timeout_s():
    return max(0.1, float(getattr(settings, "BROKER_PUBLISH_TIMEOUT_S", 1.0)))


def backoff_s():
    return max(0.0, float(getattr(settings, "BROKER_PUBLISH_BACKOFF_S", 5.0)))


def _scheme(app):
    url = app.conf.broker_url or ""
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def connection_options(app):
    """Keyword arguments of ``app.connection_for_write`` for a publisher: every socket operation
    bounded by the publish timeout (the workers keep the settings' longer ones)."""
    timeout = publish_timeout_s()
    scheme = _scheme(app)
    options = {}
    if scheme in _REDIS_SCHEMES:
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    elif scheme in _AMQP_SCHEMES:
        options = {"read_timeout": timeout, "write_timeout": timeout}
    if not options:
        return {}
    return {"connect_timeout": timeout, "transport_options": {**(app.conf.broker_transport_options or {}), **options}}


def publish_options(app):
    """Extra ``apply_async`` options: RabbitMQ waits for the publisher confirm at most the timeout."""
    if _scheme(app) in _AMQP_SCHEMES:
        return {"confirm_timeout": publish_timeout_s(), "timeout": publish_timeout_s()}
    return {}


class Breaker:
    """This process's view of the broker: after a failed publish, no try for ``backoff_s()``."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._error = ""

    def allows(self):
        with self._lock:
            return time.monotonic() >= self._open_until

    def error(self):
        with self._lock:
            return self._error

    def trip(self, error):
        with self._lock:
            self._open_until = time.monotonic() + backoff_s()
            self._error = error

    def reset(self):
        with self._lock:
            self._open_until, self._error = 0.0, ""


breaker = Breaker()


def queue_depth(app, queue):
    """Messages waiting in ``queue`` on the broker (not the ones a worker holds), or None when the
    broker cannot say (unreachable, or a transport without the count). Bounded like a publish."""
    try:
        with app.connection_for_read(**connection_options(app)) as connection:
            channel = connection.default_channel
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as exc:  # noqa: BLE001 - unknown is an answer: the caller falls back
        if _is_missing_queue(exc):
            return 0  # never declared: nothing was ever published to it
        logger.warning("Could not read the length of the %s queue: %s: %s", queue, type(exc).__name__, exc)
        return None


def _is_missing_queue(exc):
    # RabbitMQ answers a passive declare of an unknown queue with 404 NOT_FOUND.
    return getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc)

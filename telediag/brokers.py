"""What each production broker needs from Celery (plain Python: settings and tests import it).

- **Redis** (``redis://``): simple to run; a message taken by a worker stays hidden for the
  visibility timeout, which must exceed the hard time limit or Redis hands a running task out again.
  Socket timeouts: a Redis that accepts connections but answers nothing must not block anyone.
- **RabbitMQ** (``amqp://``): quorum queues (replicated, durable: a message survives a node restart
  and, on a cluster, the loss of a minority of nodes); publisher confirms (a publish returns once the
  broker holds the message); an unacknowledged message comes back as soon as its worker's connection
  drops, with no visibility timeout to wait for or to get wrong.
"""

from kombu import Exchange, Queue

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
QUEUE_NAMES = ("inference", "training", "default")


def scheme(url):
    return (url or "").split("://", 1)[0].split("+", 1)[0].lower() if "://" in (url or "") else ""


def is_amqp(url):
    return scheme(url) in AMQP_SCHEMES


def redis_transport_options(*, time_limit, socket_timeout=10.0, connect_timeout=3.0):
    return {
        "visibility_timeout": time_limit * 2 + 60,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "socket_keepalive": True,
    }


def amqp_transport_options():
    return {"confirm_publish": True}


def amqp_task_queues():
    """Durable quorum queues; Celery then turns global QoS off by itself (worker_detect_quorum_queues)."""
    return [
        Queue(
            name,
            Exchange(name, type="direct", durable=True),
            routing_key=name,
            durable=True,
            queue_arguments={"x-queue-type": "quorum"},
        )
        for name in QUEUE_NAMES
    ]

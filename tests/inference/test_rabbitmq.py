"""RabbitMQ as the production broker: quorum queues, publisher confirms, a real worker.

Each test gets a virtual host of its own on the RabbitMQ at 127.0.0.1:5672 (guest/guest), created
with rabbitmqctl and deleted after; the shared default vhost is never touched.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from inference import services
from inference.models import AnalysisJob
from telediag import brokers
from telediag.celery import app as celery_app
from tests.inference.test_integration import (  # noqa: F401 - start_worker, version: fixtures
    _unavailable,
    case_finished,
    start_worker,
    submit,
    version,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def rabbitmqctl(*args):
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def rabbit_url(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        _unavailable("the worker shares the test database: run the tests on PostgreSQL")
    if not shutil.which("rabbitmqctl"):
        _unavailable("RabbitMQ (rabbitmqctl) is not installed")
    vhost = f"telediag-test-{uuid.uuid4().hex[:8]}"
    try:
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    except (subprocess.SubprocessError, OSError) as exc:
        _unavailable(f"RabbitMQ is not running or refuses rabbitmqctl: {exc}")
    saved = (celery_app.conf.broker_url, celery_app.conf.broker_transport_options, celery_app.conf.task_queues)
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = brokers.amqp_transport_options()
    celery_app.conf.task_queues = brokers.amqp_task_queues()
    forget_queues()
    yield vhost, url
    celery_app.conf.broker_url, celery_app.conf.broker_transport_options, celery_app.conf.task_queues = saved
    forget_queues()
    services._broker.drop()
    rabbitmqctl("delete_vhost", vhost)


def forget_queues():
    """Celery caches the queues (and the router holding them) from the first publish on."""
    for name in ("queues", "router", "default_queue", "send_task_message"):
        celery_app.amqp.__dict__.pop(name, None)
    celery_app.amqp._rtable = None


def queue_types(vhost):
    rows = rabbitmqctl("list_queues", "-q", "-p", vhost, "name", "type", "messages_ready").splitlines()
    return {row.split()[0]: row.split()[1:] for row in rows if row.strip() and not row.startswith("name")}


def test_a_case_is_analysed_over_rabbitmq_with_quorum_queues(client, world, version, start_worker, rabbit_url):  # noqa: F811 - fixtures
    vhost, url = rabbit_url
    worker = start_worker(broker_url=url)
    case = submit(client, world, count=2)
    wait_for(case_finished(case), "the case to be analysed over RabbitMQ", worker)
    assert set(AnalysisJob.objects.filter(smear__case=case).values_list("status", "attempts")) == {("done", 1)}
    assert queue_types(vhost)["inference"][0] == "quorum"


def test_a_whole_worker_killed_mid_task_loses_nothing(client, world, version, start_worker, rabbit_url):  # noqa: F811 - fixtures
    """RabbitMQ gives an unacknowledged message back as soon as its consumer's connection drops:
    a replacement worker finishes the job at once, with no visibility timeout to wait for."""
    vhost, url = rabbit_url
    first = start_worker(broker_url=url, FAULT_ANALYSIS_DELAY_S="30")
    case = submit(client, world)
    job = AnalysisJob.objects.get(smear__case=case)

    def running():
        job.refresh_from_db()
        return job.status == AnalysisJob.Status.RUNNING

    wait_for(running, "the job to start", first)
    os.killpg(first.process.pid, signal.SIGKILL)  # the whole worker: parent and children
    first.process.wait(10)
    killed_at = time.monotonic()
    second = start_worker(broker_url=url)
    wait_for(case_finished(case), "the job to finish on the replacement worker", second)
    job.refresh_from_db()
    assert job.status == "done" and job.attempts == 2
    assert time.monotonic() - killed_at < 60


def test_the_sweeper_keeps_one_message_per_job_on_rabbitmq(world, version, rabbit_url):  # noqa: F811 - fixtures
    from django.utils import timezone

    vhost, url = rabbit_url
    for _ in range(2):
        world.submit_case(files=None)
    jobs = AnalysisJob.objects.filter(status="queued")
    assert jobs.count() == 2
    for minutes in (5, 10, 15):
        jobs.update(published_at=timezone.now() - timezone.timedelta(minutes=minutes))
        services.sweep(requeue_after_s=120)
    from inference import publishing

    assert queue_types(vhost)["inference"][0] == "quorum"
    assert publishing.queue_depth(celery_app, "inference") == 2  # the broker's own count

"""The FHIR push end to end: a signature commits, the web process queues the push on Redis, a real
Celery worker (`-Q inference,default`) POSTs the bundle to a FHIR-like server this test runs."""

import pytest

from tests.inference.test_integration import redis_broker, wait_for
from tests.reports.conftest import sign
from tests.reports.fhir_server import FhirServer
from tests.reports.test_fhir import validated

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_pushes_the_signed_report(services_up, world, analysed_case, settings, broker_settings, start_worker):
    from reports.models import ReportVersion

    with FhirServer() as server:  # retries are tested in test_fhir (a worker would wait 30 s for one)
        settings.FHIR_PUSH_URL = server.url
        redis_broker()
        worker = start_worker(
            TELEDIAG_FHIR_PUSH_URL=server.url,
            TELEDIAG_WORKER_WARMUP="false",
        )
        review = sign(analysed_case, world.pathologist)  # commits: the report is issued, its push queued
        version = ReportVersion.objects.get(review=review)

        def pushed():
            version.refresh_from_db()
            return version.fhir_pushed_at is not None

        wait_for(pushed, "the worker to push the bundle", worker, timeout=60)
    assert len(server.received) == 1
    path, headers, bundle = server.received[-1]
    assert path == "/fhir/Bundle"
    report = validated(bundle)["DiagnosticReport"][0]
    assert report["status"] == "final"
    assert report["identifier"][0]["value"] == analysed_case.reference
    assert version.fhir_push_attempts == 1

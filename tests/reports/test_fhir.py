"""The FHIR R4 export of a signed case, validated with fhir.resources (its R4B models, which read
R4 content), and the optional push to a FHIR server (a local HTTP server here)."""

import base64
import hashlib

import pytest
from django.urls import reverse
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from tests.reports.conftest import FLAG_TEXT, MODEL_NAME, amend, sign
from tests.reports.fhir_server import FhirServer

pytestmark = pytest.mark.django_db


def fetch(client, case, **params):
    response = client.get(reverse("api-case-fhir", args=[case.pk]), params)
    assert response.status_code == 200, response.content[:500]
    return response.json()


def validated(bundle):
    """The bundle parsed by fhir.resources, every entry also on its own; {type: [resources]}."""
    Bundle.model_validate(bundle)
    by_type = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        by_type.setdefault(resource["resourceType"], []).append(resource)
    return by_type


def resolve(bundle, reference):
    urls = {entry["fullUrl"]: entry["resource"] for entry in bundle["entry"]}
    return urls[reference["reference"]]


def test_the_validator_rejects_a_broken_bundle():
    with pytest.raises(ValidationError):
        Bundle.model_validate(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "DiagnosticReport", "status": "final", "bogus": 1}}],
            }
        )


def test_signed_case_as_a_fhir_bundle(client, world, signed_case):
    client.force_login(world.clinician)
    bundle = fetch(client, signed_case)
    resources = validated(bundle)
    assert bundle["type"] == "collection"
    assert {name: len(items) for name, items in resources.items()} == {
        "DiagnosticReport": 1,
        "Observation": 2,
        "Device": 1,
        "Media": 3,
        "Patient": 1,
        "Organization": 2,
        "Practitioner": 1,
        "Provenance": 1,
    }

    report = resources["DiagnosticReport"][0]
    assert report["status"] == "final"
    assert report["code"]["text"]
    assert report["conclusion"].startswith("Pre-B ALL.")
    assert report["conclusionCode"][0]["coding"][0]["code"] == "pre_b"
    assert report["conclusionCode"][0]["coding"][0]["display"] == "Pre-B ALL"
    interpreter = resolve(bundle, report["resultsInterpreter"][0])
    assert interpreter["resourceType"] == "Practitioner"
    assert interpreter["identifier"][0]["value"] == world.pathologist.username
    assert resolve(bundle, report["subject"])["identifier"][0]["value"] == "MRN-1"
    assert resolve(bundle, report["performer"][0])["name"] == "Central Haematology Laboratory"
    assert {org["name"] for org in resources["Organization"]} == {"St Mary's Clinic", "Central Haematology Laboratory"}
    assert len(report["media"]) == 3

    # presentedForm is the very PDF the site downloads.
    form = report["presentedForm"][0]
    assert form["contentType"] == "application/pdf"
    pdf = base64.b64decode(form["data"])
    assert pdf == client.get(reverse("api-case-report-pdf", args=[signed_case.pk])).content
    assert form["hash"] == base64.b64encode(hashlib.sha1(pdf).digest()).decode()

    # The AI observation: per-class probabilities, the model version as its device, its flags.
    results = [resolve(bundle, ref) for ref in report["result"]]
    ai = next(o for o in results if o["code"]["coding"][0]["code"] == "ai-all-subtype")
    final = next(o for o in results if o["code"]["coding"][0]["code"] == "final-diagnosis")
    probabilities = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in ai["component"]}
    assert probabilities == pytest.approx({"benign": 0.075, "early_pre_b": 0.15, "pre_b": 0.70, "pro_b": 0.075})
    device = resolve(bundle, ai["device"])
    assert device["resourceType"] == "Device"
    assert device["version"][0]["value"] == MODEL_NAME
    notes = " ".join(note["text"] for note in ai["note"])
    assert FLAG_TEXT in notes and "decision support" in notes
    assert ai["valueCodeableConcept"]["coding"][0]["code"] == "pre_b"
    assert final["status"] == "final"
    assert final["valueCodeableConcept"]["coding"][0]["display"] == "Pre-B ALL"

    provenance = resources["Provenance"][0]
    assert {t["reference"] for t in provenance["target"]} >= {f"urn:uuid:{report['id']}"}
    assert any(resolve(bundle, agent["who"]) == device for agent in provenance["agent"])
    assert MODEL_NAME in provenance["entity"][0]["what"]["display"]

    media = resources["Media"][0]
    smear = signed_case.smears.first()
    assert media["content"]["url"] == f"http://testserver{reverse('api-smear-image', args=[smear.pk])}"
    image = client.get(media["content"]["url"].removeprefix("http://testserver"))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert (media["width"], media["height"]) == (smear.width, smear.height)


def test_amended_case_exports_status_amended(client, world, signed_case):
    amend(signed_case, world.pathologist)
    client.force_login(world.pathologist)
    resources = validated(fetch(client, signed_case))
    report = resources["DiagnosticReport"][0]
    assert report["status"] == "amended"
    assert report["conclusion"].startswith("AMENDED (version 2)")
    assert "CD10 negative" in report["conclusion"]
    assert report["conclusionCode"][0]["coding"][0]["code"] == "pro_b"
    final = next(o for o in resources["Observation"] if o["code"]["coding"][0]["code"] == "final-diagnosis")
    assert final["status"] == "amended"
    # The first version's export is still the signed one.
    first = validated(fetch(client, signed_case, version=1))["DiagnosticReport"][0]
    assert first["status"] == "final" and first["conclusionCode"][0]["coding"][0]["code"] == "pre_b"


@pytest.fixture
def eager_celery(monkeypatch):
    """Tasks run in this process (Celery's own eager mode, retries included)."""
    from telediag.celery import app

    monkeypatch.setattr(app.conf, "task_always_eager", True)
    return app


def test_sign_pushes_the_bundle_and_retries_a_busy_server(
    world, analysed_case, settings, eager_celery, django_capture_on_commit_callbacks
):
    from reports.models import ReportVersion

    with FhirServer(statuses=[503]) as server:  # busy once: the task retries
        settings.FHIR_PUSH_URL = server.url
        settings.FHIR_PUSH_TOKEN = "push-secret"
        with django_capture_on_commit_callbacks(execute=True):
            review = sign(analysed_case, world.pathologist)
    assert len(server.received) == 2
    path, headers, bundle = server.received[-1]
    assert path == "/fhir/Bundle"
    assert headers["Authorization"] == "Bearer push-secret"
    assert headers["Content-Type"] == "application/fhir+json"
    resources = validated(bundle)
    assert resources["DiagnosticReport"][0]["status"] == "final"
    version = ReportVersion.objects.get(review=review)
    assert version.fhir_pushed_at is not None
    assert version.fhir_push_attempts == 2 and version.fhir_push_error == ""


def test_a_rejected_push_is_not_retried_and_is_recorded(
    world, analysed_case, settings, eager_celery, django_capture_on_commit_callbacks
):
    from reports.models import ReportVersion

    with FhirServer(statuses=[422]) as server:
        settings.FHIR_PUSH_URL = server.url
        with django_capture_on_commit_callbacks(execute=True):
            review = sign(analysed_case, world.pathologist)
    assert len(server.received) == 1
    version = ReportVersion.objects.get(review=review)
    assert version.fhir_pushed_at is None
    assert "422" in version.fhir_push_error


def test_no_push_without_an_address(world, analysed_case, settings, eager_celery, django_capture_on_commit_callbacks):
    from reports.models import ReportVersion

    settings.FHIR_PUSH_URL = ""
    with django_capture_on_commit_callbacks(execute=True):
        review = sign(analysed_case, world.pathologist)
    assert ReportVersion.objects.get(review=review).fhir_push_attempts == 0


def test_push_reports_command_sends_what_was_missed(world, signed_case, settings):
    from django.core.management import CommandError, call_command

    from reports.models import ReportVersion
    from reports.services import report_version

    version = report_version(signed_case)  # issued while no push was configured
    settings.FHIR_PUSH_URL = ""
    with pytest.raises(CommandError, match="not set"):
        call_command("push_reports")
    with FhirServer(statuses=[503]) as server:
        settings.FHIR_PUSH_URL = server.url
        with pytest.raises(CommandError):
            call_command("push_reports")  # busy: stops, records why
        assert "503" in ReportVersion.objects.get(pk=version.pk).fhir_push_error
        call_command("push_reports")
        call_command("push_reports")  # nothing left: no second POST
    assert len(server.received) == 2
    assert validated(server.received[-1][2])["DiagnosticReport"][0]["identifier"][0]["value"] == signed_case.reference
    assert ReportVersion.objects.get(pk=version.pk).fhir_pushed_at is not None

"""JSON logs (gunicorn and a real worker: one JSON object per line with the request, case and task
ids, no patient names) and the worker's model warm-up at process start."""

import io
import json
import uuid
from datetime import date

import pytest
import requests

from tests.conftest import png_bytes
from tests.inference.conftest import model_file, register_version  # noqa: F401
from tests.inference.test_integration import case_finished, submit, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
GIVEN, FAMILY = "Zebulon", "Quixote-Marchbanks"


def json_lines(text):
    """The log's records: every line written by Python logging must be a JSON object."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
        else:  # TensorFlow's C++ start-up lines and Celery's banner are not Python logging
            assert not line[:4].isdigit() or " INFO " not in line, f"a plain log line in JSON mode: {line}"
            assert "[INFO]" not in line, f"a plain gunicorn line in JSON mode: {line}"
    return records


def test_json_logs_carry_request_case_and_task_ids_and_no_patient_names(
    world,
    postgres,
    redis_url,
    start_gunicorn,
    start_worker,
    model_file,  # noqa: F811 - the fixture, imported above
    tmp_path,
):
    from rest_framework.authtoken.models import Token

    from cases.models import Case, Patient

    register_version(*model_file, name="json-logs-model")
    patient = Patient.objects.create(
        organisation=world.site,
        mrn="MRN-JSON-7",
        given_name=GIVEN,
        family_name=FAMILY,
        sex="M",
        date_of_birth=date(2011, 3, 4),
        created_by=world.clinician,
    )
    token = Token.objects.create(user=world.clinician).key
    base, server = start_gunicorn(CELERY_BROKER_URL=redis_url, TELEDIAG_LOG_FORMAT="json")
    worker = start_worker(broker_url=redis_url, TELEDIAG_LOG_FORMAT="json")

    request_id = f"req-{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Token {token}", "X-Request-ID": request_id}
    response = requests.post(
        f"{base}/api/cases/",
        headers=headers,
        timeout=60,
        data={"patient": patient.pk, "priority": "routine", "clinical_notes": f"{FAMILY} notes"},
        files=[("images", ("smear.png", io.BytesIO(png_bytes()), "image/png"))],
    )
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == request_id
    case = Case.objects.get(pk=response.json()["id"])
    # A search by name: the access line keeps the path only, never the query string.
    assert requests.get(f"{base}/api/patients/", params={"search": FAMILY}, headers=headers, timeout=30).ok
    assert requests.get(f"{base}/api/cases/{case.pk}/", headers={"Authorization": f"Token {token}"}, timeout=30).ok
    wait_for(case_finished(case), "the case to be analysed", worker)
    server.stop(), worker.stop()

    web = json_lines(server.output())
    assert any(r["logger"] == "gunicorn.error" and r["message"].startswith("Booting worker") for r in web)
    upload = [r for r in web if r.get("path") == "/api/cases/" and r.get("method") == "POST"]
    assert len(upload) == 1 and upload[0]["request_id"] == request_id and upload[0]["status"] == 201
    assert {"time", "level", "logger", "message"} <= set(upload[0]) and "context" not in upload[0]
    detail = [r for r in web if r.get("path") == f"/api/cases/{case.pk}/"]
    assert detail and detail[0]["case_id"] == str(case.pk) and len(detail[0]["request_id"]) == 32

    records = json_lines(worker.output())
    in_task = [r for r in records if r.get("task_id")]
    assert in_task, "no log line of the task carries its id"
    assert any(r.get("case_id") == str(case.pk) for r in in_task)
    for text in (server.output(), worker.output()):
        assert GIVEN not in text and FAMILY not in text


def test_a_worker_loads_the_active_model_when_it_starts(
    client,
    world,
    postgres,
    redis_url,
    start_worker,
    model_file,  # noqa: F811
):
    from telediag.celery import app

    version = register_version(*model_file, name="warm-model")
    worker = start_worker(broker_url=redis_url)
    # Before any case exists, the worker process has the model loaded.
    wait_for(lambda: f"Warm-up: model version {version.name} ready" in worker.output(), "the warm-up", worker)
    saved = app.conf.broker_url
    app.conf.broker_url = redis_url
    try:
        case = submit(client, world)
        wait_for(case_finished(case), "the case", worker)
    finally:
        app.conf.broker_url = saved
    log = worker.output()
    assert log.count("Loaded model version") == 1  # by the warm-up, not again by the first job
    assert log.index("Loaded model version") < log.index("Warm-up: model version")


def test_warm_up_can_be_turned_off(postgres, redis_url, start_worker, model_file):  # noqa: F811
    register_version(*model_file, name="cold-model")
    cold = start_worker(broker_url=redis_url, TELEDIAG_WORKER_WARMUP="false")
    wait_for(lambda: " ready." in cold.output(), "the worker to start", cold, timeout=120)
    assert "Warm-up" not in cold.output() and "Loaded model version" not in cold.output()

"""The OpenAPI schema generates cleanly (no warnings, valid OpenAPI) and the docs page renders."""

from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS
from rest_framework.test import APIClient


def test_schema_generates_without_warnings_and_validates(tmp_path, db):
    GENERATOR_STATS.reset()
    target = tmp_path / "schema.yml"
    # --fail-on-warn raises on any warning or error; --validate checks it against the OpenAPI spec.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    text = target.read_text()
    for path in (
        "/api/auth/token/",
        "/api/me/",
        "/api/patients/",
        "/api/cases/",
        "/api/cases/{id}/sign/",
        "/api/cases/{id}/amend/",
        "/api/review-queue/",
        "/api/users/",
        "/api/audit-events/",
    ):
        assert f"  {path}:" in text, path


def test_schema_documents_errors_uploads_and_auth(world):
    client = APIClient()
    client.force_authenticate(world.clinician)  # the schema is for signed-in users only
    schema = client.get("/api/schema/?format=json").json()
    components = schema["components"]
    assert set(components["schemas"]["ApiError"]["properties"]) == {"error"}
    assert set(components["schemas"]["ApiErrorBody"]["properties"]) == {"code", "message", "details"}
    assert {"tokenAuth", "cookieAuth"} <= set(components["securitySchemes"])

    create = schema["paths"]["/api/cases/"]["post"]
    upload = create["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    images = components["schemas"][upload]["properties"]["images"]
    assert images["type"] == "array" and images["items"]["format"] == "binary"
    assert {"201", "400", "401", "403"} <= set(create["responses"])
    sign = schema["paths"]["/api/cases/{id}/sign/"]["post"]
    assert sign["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/ApiError")
    assert schema["paths"]["/api/cases/{id}/"]["get"]["parameters"][0]["schema"]["type"] == "integer"


def test_docs_page_renders(world):
    client = APIClient()
    client.force_login(world.clinician)  # the docs are for signed-in users only
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    script = client.get("/api/docs/?script=")  # its start-up script, a file for the CSP
    assert script.status_code == 200 and b"/api/schema/" in script.content


def test_every_operation_with_a_body_documents_the_415_it_answers(world):
    from tests.api.conftest import assert_error

    client = APIClient()
    client.force_authenticate(world.clinician)
    schema = client.get("/api/schema/?format=json").json()
    with_body = [
        (path, method, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert len(with_body) >= 8
    for path, method, operation in with_body:
        documented = operation["responses"].get("415", {})
        assert (
            documented.get("content", {})
            .get("application/json", {})
            .get("schema", {})
            .get("$ref", "")
            .endswith("/ApiError")
        ), (method, path)

    # What it documents: a body its parsers do not read, before the view runs.
    response = client.post("/api/notifications/read/", "ids=1", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")

"""The one error body, for every kind of failure."""

import json

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.test import RequestFactory
from rest_framework.authtoken.models import Token

from core.api_errors import exception_handler, page_not_found, server_error
from core.errors import AlreadySigned, UploadRejected
from tests.api.conftest import assert_error
from tests.conftest import DEMO_PASSWORD


def test_anonymous_gets_401_with_the_body_and_a_token_challenge(client_for, db):
    response = client_for(None).get("/api/cases/")
    error = assert_error(response, 401, "not_authenticated")
    assert "credentials" in error["message"]
    assert response["WWW-Authenticate"].startswith("Token")


def test_a_bad_token_is_a_401(client_for, db):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_error(client.get("/api/me/"), 401, "authentication_failed")


def test_malformed_json_is_a_400_naming_the_body(world, case, client_for):
    response = client_for(world.pathologist).post(
        f"/api/cases/{case.pk}/sign/", data='{"diagnosis": ', content_type="application/json"
    )
    error = assert_error(response, 400, "parse_error")
    assert "JSON" in error["message"] and set(error["details"]) == {"body"}


def test_a_json_list_instead_of_an_object_is_a_400(world, case, client_for):
    response = client_for(world.pathologist).post(f"/api/cases/{case.pk}/sign/", ["pre_b"], format="json")
    error = assert_error(response, 400, "invalid")
    assert "non_field_errors" in error["details"]
    assert "dictionary" in error["message"]


def test_validation_errors_name_every_bad_field(world, client_for):
    response = client_for(world.clinician).post(
        "/api/patients/", {"mrn": "M-9", "sex": "Q", "date_of_birth": "yesterday", "nickname": "Al"}, format="json"
    )
    error = assert_error(response, 400, "invalid")
    assert set(error["details"]) == {"sex", "date_of_birth", "given_name", "family_name", "nickname"}
    assert error["details"]["nickname"] == ["Unknown field."]
    for field in error["details"]:
        assert field in error["message"]


def test_wrong_method_is_a_405(world, case, client_for):
    assert_error(client_for(world.clinician).delete(f"/api/cases/{case.pk}/"), 405, "method_not_allowed")
    assert_error(client_for(world.lab_admin).put(f"/api/users/{world.pathologist.pk}/", {}, format="json"), 405)


def test_json_case_submission_is_a_415(world, client_for):
    response = client_for(world.clinician).post("/api/cases/", {"patient": world.patient.pk}, format="json")
    assert_error(response, 415, "unsupported_media_type")


def test_domain_errors_keep_their_code_status_and_details(world, case, client_for):
    client_for(world.pathologist).post(
        f"/api/cases/{case.pk}/sign/", {"password": DEMO_PASSWORD, "diagnosis": "benign"}, format="json"
    )
    response = client_for(world.pathologist2).post(
        f"/api/cases/{case.pk}/sign/", {"password": DEMO_PASSWORD, "diagnosis": "pro_b"}, format="json"
    )
    error = assert_error(response, 409, "already_signed")
    assert error["details"]["signed_by"] == "Paula Tester"


def test_unknown_ids_are_404_with_the_body(world, client_for):
    assert_error(client_for(world.clinician).get("/api/cases/424242/"), 404, "not_found")
    # An id beyond any integer column is just "not found", not a database error.
    assert_error(client_for(world.clinician).get(f"/api/cases/{10**30}/"), 404, "not_found")
    assert_error(client_for(world.clinician).get("/api/cases/abc/"), 404, "not_found")
    assert_error(client_for(world.clinician).get("/api/patients/-1/"), 404, "not_found")
    assert_error(client_for(world.lab_admin).get("/api/users/x/"), 404, "not_found")


def test_token_endpoint_is_throttled_with_retry_after(world, client_for):
    client = client_for(None)
    for _ in range(20):
        client.post("/api/auth/token/", {"username": "clara_clinician", "password": "wrong"}, format="json")
    response = client.post("/api/auth/token/", {"username": "clara_clinician", "password": "wrong"}, format="json")
    error = assert_error(response, 429, "throttled")
    assert error["details"]["retry_after"] > 0 and "Retry-After" in response


# --------------------------------------------------------------------------------------------
# The handler itself


@pytest.mark.django_db
def test_unexpected_errors_are_a_500_with_the_body_and_are_logged(settings, caplog):
    settings.DEBUG = False
    response = exception_handler(RuntimeError("boom"), {"view": None, "request": None})
    assert response.status_code == 500
    assert response.data["error"]["code"] == "server_error"
    assert "boom" not in str(response.data)  # no internals in the body
    assert any("boom" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


@pytest.mark.django_db
def test_unexpected_errors_show_django_debug_page_in_debug(settings):
    settings.DEBUG = True
    assert exception_handler(RuntimeError("boom"), {"view": None, "request": None}) is None


@pytest.mark.django_db
def test_django_errors_are_translated():
    response = exception_handler(DjangoValidationError({"mrn": ["Bad."], "__all__": ["Wrong."]}), {})
    assert response.status_code == 400
    assert response.data["error"]["details"] == {"mrn": ["Bad."], "non_field_errors": ["Wrong."]}
    response = exception_handler(Http404("No such case."), {})
    assert response.status_code == 404 and response.data["error"]["message"] == "No such case."


@pytest.mark.django_db
def test_upload_rejections_map_each_file_to_its_reason():
    exc = UploadRejected("1 of 2 files was rejected.", details={"notes.txt": "is not an image"})
    response = exception_handler(exc, {})
    assert response.status_code == 400
    assert response.data == {
        "error": {
            "code": "upload_rejected",
            "message": "1 of 2 files was rejected.",
            "details": {"notes.txt": "is not an image"},
        }
    }
    assert exception_handler(AlreadySigned("Signed."), {}).status_code == 409


def test_page_not_found_handler_answers_json_under_api_only(db):
    factory = RequestFactory()
    response = page_not_found(factory.get("/api/nothing-here/"), Http404())
    assert response.status_code == 404
    assert json.loads(response.content)["error"]["code"] == "not_found"
    html = page_not_found(factory.get("/nothing-here/"), Http404())
    assert html.status_code == 404 and not html["Content-Type"].startswith("application/json")
    assert json.loads(server_error(factory.get("/api/cases/")).content)["error"]["code"] == "server_error"


def test_addresses_no_view_answers_get_the_body(world, client_for):
    assert_error(client_for(world.lab_admin).get("/api/no-such-endpoint/"), 404, "not_found")
    assert_error(client_for(world.lab_admin).get("/api/audit-events/1.5/"), 404, "not_found")
    # A missing trailing slash on a GET is still redirected (APPEND_SLASH), not a 404.
    assert client_for(None).get("/api/cases")["Location"] == "/api/cases/"


def test_deactivated_users_token_no_longer_works(world, client_for):
    token = Token.objects.create(user=world.clinician)
    world.clinician.is_active = False
    world.clinician.save()
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert_error(client.get("/api/me/"), 401, "authentication_failed")

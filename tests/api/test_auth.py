"""Token authentication for scripts, and session authentication (with CSRF) for the browser."""

from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.api.conftest import assert_error
from tests.conftest import DEMO_PASSWORD, current_totp_code


def _token(client, username, password=DEMO_PASSWORD, otp_code=None, **kwargs):
    data = {"username": username, "password": password}
    if otp_code:
        data["otp_code"] = otp_code  # pathologists and lab admins: the second factor
    return client.post("/api/auth/token/", data, **kwargs)


def test_a_script_gets_a_token_and_uses_it(world, case):
    client = APIClient()
    response = _token(client, "paula_pathologist", otp_code=current_totp_code(world.pathologist), format="json")
    assert response.status_code == 200
    key = response.json()["token"]
    assert Token.objects.get(user=world.pathologist).key == key
    # The same token every time, until revoked.
    again = _token(client, "paula_pathologist", otp_code=current_totp_code(world.pathologist), format="json")
    assert again.json()["token"] == key

    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/me/").json()["username"] == "paula_pathologist"
    queue = client.get("/api/review-queue/").json()
    assert [item["id"] for item in queue["results"]] == [case.pk]
    # Token requests are not subject to CSRF: a script can POST.
    signed = client.post(
        f"/api/cases/{case.pk}/sign/", {"password": DEMO_PASSWORD, "diagnosis": "benign"}, format="json"
    )
    assert signed.status_code == 200 and signed.json()["status"] == "signed"


def test_token_form_encoded_works_too(world):
    assert _token(APIClient(), "clara_clinician").status_code == 200


def test_wrong_password_unknown_user_and_inactive_user_get_no_token(world):
    client = APIClient()
    error = assert_error(_token(client, "clara_clinician", "wrong", format="json"), 400, "invalid")
    assert error["message"] == "Unable to log in with provided credentials."
    assert_error(_token(client, "nobody", format="json"), 400, "invalid")
    world.colleague.is_active = False
    world.colleague.save()
    assert_error(_token(client, "colin_colleague", format="json"), 400, "invalid")
    assert not Token.objects.exists()


def test_token_request_must_name_its_fields(db):
    error = assert_error(APIClient().post("/api/auth/token/", {}, format="json"), 400, "invalid")
    assert set(error["details"]) == {"username", "password"}


def test_token_endpoint_ignores_a_session_cookie_without_csrf(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.clinician)
    assert _token(client, "clara_clinician", format="json").status_code == 200


def test_browser_session_works_and_writes_need_the_csrf_token(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.clinician)
    assert client.get("/api/me/").json()["username"] == "clara_clinician"
    payload = {"mrn": "S-1", "given_name": "Ana", "family_name": "Ruiz", "sex": "F", "date_of_birth": "2016-03-01"}
    error = assert_error(client.post("/api/patients/", payload, format="json"), 403, "permission_denied")
    assert "CSRF" in error["message"]


def test_token_endpoint_is_in_the_schema(world):
    client = APIClient()
    client.force_authenticate(world.clinician)  # the schema is for signed-in users only
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/auth/token/"]["post"]
    assert "security" not in operation or operation["security"] in ([], [{}])
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert request_schema.endswith("/TokenRequest")
    assert schema["components"]["securitySchemes"]["tokenAuth"]["in"] == "header"

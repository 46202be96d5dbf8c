"""Lab admins manage their organisation's users; audit trail reading and filters."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import User
from audit.models import AuditEvent
from security.passwords import password_change
from tests.api.conftest import assert_error
from tests.conftest import DEMO_PASSWORD, current_totp_code

NEW = {
    "username": "nina_newpath",
    "first_name": "Nina",
    "last_name": "New",
    "email": "nina@example.org",
    "role": "pathologist",
    "password": "microscope-slides-in-a-row",
}


def test_lab_admin_creates_a_pathologist_who_can_then_log_in(world, client_for):
    response = client_for(world.lab_admin).post("/api/users/", NEW, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    user = User.objects.get(username="nina_newpath")
    assert response["Location"] == f"/api/users/{user.pk}/"
    assert "password" not in body
    assert body["role"] == "pathologist" and body["is_active"] is True and body["email"] == "nina@example.org"
    assert user.organisation == world.lab and user.check_password(NEW["password"])
    assert AuditEvent.objects.filter(action="created", actor=world.lab_admin, detail__username="nina_newpath").exists()
    credentials = {"username": "nina_newpath", "password": NEW["password"]}
    # The password is temporary: she chooses her own (in the portal) before getting API tokens...
    refused = APIClient().post("/api/auth/token/", credentials, format="json")
    assert refused.status_code == 400 and "temporary password" in refused.json()["error"]["details"]["password"][0]
    password_change(user=user, new_password="nina-chose-this-1")
    credentials["password"] = "nina-chose-this-1"
    # ...and, as a pathologist, sets up her second factor and sends a code with it.
    refused = APIClient().post("/api/auth/token/", credentials, format="json")
    assert refused.status_code == 400 and "otp_code" in refused.json()["error"]["details"]
    token = APIClient().post("/api/auth/token/", {**credentials, "otp_code": current_totp_code(user)}, format="json")
    assert token.status_code == 200


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"password": "short"}, "password"),
        ({"password": "password123"}, "password"),  # common
        ({"password": "12345678901234"}, "password"),  # numeric
        ({"username": "Paula_Pathologist"}, "username"),  # taken, whatever the case
        ({"username": "bad name!"}, "username"),
        ({"username": ""}, "username"),
        ({"role": "superuser"}, "role"),
        ({"role": "clinician"}, "role"),  # a laboratory has no clinicians
        ({"email": "not-an-email"}, "email"),
        ({"organisation": 1}, "organisation"),  # always the admin's own
        ({"is_superuser": True}, "is_superuser"),
    ],
)
def test_user_creation_refuses_bad_input_naming_the_field(world, client_for, changes, field):
    response = client_for(world.lab_admin).post("/api/users/", {**NEW, **changes}, format="json")
    error = assert_error(response, 400)
    assert field in error["details"], error
    assert not User.objects.filter(first_name="Nina").exists()


def test_missing_fields_are_named(world, client_for):
    error = assert_error(client_for(world.lab_admin).post("/api/users/", {}, format="json"), 400, "invalid")
    assert set(error["details"]) == {"username", "role", "password"}


def test_deactivate_and_reactivate_a_user(world, client_for):
    token = Token.objects.create(user=world.pathologist2)
    client = client_for(world.lab_admin)
    url = f"/api/users/{world.pathologist2.pk}/"

    response = client.patch(url, {"is_active": False}, format="json")
    assert response.status_code == 200 and response.json()["is_active"] is False
    assert not Token.objects.filter(pk=token.pk).exists()  # tokens are revoked
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert_error(script.get("/api/me/"), 401)
    assert_error(
        APIClient().post(
            "/api/auth/token/", {"username": "peter_pathologist", "password": DEMO_PASSWORD}, format="json"
        ),
        400,
    )
    event = AuditEvent.objects.get(action="changed", actor=world.lab_admin)
    assert event.detail["changes"] == {"is_active": [True, False]}

    assert client.patch(url, {"is_active": True}, format="json").json()["is_active"] is True
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.is_active


def test_change_a_role(world, client_for):
    response = client_for(world.lab_admin).patch(
        f"/api/users/{world.pathologist2.pk}/", {"role": "lab_admin"}, format="json"
    )
    assert response.status_code == 200 and response.json()["role"] == "lab_admin"
    # A reading laboratory has no clinicians.
    error = assert_error(
        client_for(world.lab_admin).patch(f"/api/users/{world.pathologist2.pk}/", {"role": "clinician"}, format="json"),
        400,
    )
    assert "role" in error["details"]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"is_active": "maybe"}, "is_active"),
        ({"role": "boss"}, "role"),
        ({"is_activ": False}, "is_activ"),  # a typo is not silently ignored
        ({"username": "renamed"}, "username"),
        ({}, "non_field_errors"),
    ],
)
def test_malformed_updates_are_a_400(world, client_for, payload, field):
    response = client_for(world.lab_admin).patch(f"/api/users/{world.pathologist2.pk}/", payload, format="json")
    assert field in assert_error(response, 400, "invalid")["details"]
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.is_active and world.pathologist2.role == "pathologist"


def test_an_admin_cannot_lock_themselves_out(world, client_for):
    client = client_for(world.lab_admin)
    url = f"/api/users/{world.lab_admin.pk}/"
    assert "is_active" in assert_error(client.patch(url, {"is_active": False}, format="json"), 400)["details"]
    assert "role" in assert_error(client.patch(url, {"role": "pathologist"}, format="json"), 400)["details"]
    world.lab_admin.refresh_from_db()
    assert world.lab_admin.is_active and world.lab_admin.role == "lab_admin"


def test_superusers_are_not_managed_by_lab_admins(world, client_for):
    root = User.objects.create_superuser("root", "root@example.org", "x-very-long-password", organisation=world.lab)
    client = client_for(world.lab_admin)
    assert "root" not in {u["username"] for u in client.get("/api/users/").json()["results"]}
    assert_error(client.patch(f"/api/users/{root.pk}/", {"is_active": False}, format="json"), 404)


# --------------------------------------------------------------------------------------------
# Audit trail


def test_audit_trail_lists_newest_first_and_filters(world, case, client_for):
    client_for(world.pathologist).post(
        f"/api/cases/{case.pk}/sign/", {"password": DEMO_PASSWORD, "diagnosis": "benign"}, format="json"
    )
    client = client_for(world.lab_admin)

    events = client.get("/api/audit-events/").json()["results"]
    assert [e["action"] for e in events[:2]] == ["signed", "submitted"]
    signed = events[0]
    assert signed["case"] == case.pk and signed["patient"] == world.patient.pk
    assert signed["actor"]["username"] == "paula_pathologist"
    assert signed["actor_organisation"]["name"] == world.lab.name
    assert signed["detail"] == {"diagnosis": "benign", "signature_method": "password"}

    assert [e["action"] for e in client.get("/api/audit-events/", {"action": "submitted"}).json()["results"]] == [
        "submitted"
    ]
    assert {e["case"] for e in client.get("/api/audit-events/", {"case": case.pk}).json()["results"]} == {case.pk}
    by_clinician = client.get("/api/audit-events/", {"actor": world.clinician.pk}).json()["results"]
    assert {e["actor"]["id"] for e in by_clinician} == {world.clinician.pk}


@pytest.mark.parametrize(
    "params, field", [({"action": "deleted"}, "action"), ({"case": "abc"}, "case"), ({"actor": -1}, "actor")]
)
def test_malformed_audit_filters_are_a_400(world, client_for, params, field):
    error = assert_error(client_for(world.lab_admin).get("/api/audit-events/", params), 400, "invalid")
    assert set(error["details"]) == {field}


def test_audit_trail_is_read_only(world, case, client_for):
    event = AuditEvent.objects.filter(case=case).first()
    client = client_for(world.lab_admin)
    assert_error(client.post("/api/audit-events/", {}, format="json"), 405)
    assert_error(client.delete(f"/api/audit-events/{event.pk}/"), 405)
    assert_error(client.patch(f"/api/audit-events/{event.pk}/", {"action": "viewed"}, format="json"), 405)

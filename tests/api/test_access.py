"""Who gets what, endpoint by endpoint.

For every endpoint: allowed users, a user of the right organisation with the wrong role, a user of
an unrelated organisation, a pathologist of a laboratory the case was not referred to, anonymous.
The rules (as in the portal): 401 anonymous; 403 for a role that never uses the endpoint, whatever
the id; 404 for an object the user may not see; 403 for a visible object the role may not act on.
"""

from datetime import date

import pytest

from accounts.models import User
from audit.models import AuditEvent
from cases.models import Case, Patient, Review
from tests.api.conftest import assert_error, who
from tests.conftest import DEMO_PASSWORD, smear_upload

ANON = "anonymous"


def _check(response, expected):
    if expected in (200, 201):
        assert response.status_code == expected, response.content[:2000]
        return response.json()
    assert_error(
        response, expected, {401: "not_authenticated", 403: "permission_denied", 404: "not_found"}.get(expected)
    )
    return None


def _ids(body):
    return {item["id"] for item in body["results"]}


# --------------------------------------------------------------------------------------------
# Patients


@pytest.mark.parametrize(
    "name, expected, sees_patient",
    [
        ("clinician", 200, True),
        ("colleague", 200, True),
        ("site_admin", 403, None),  # right organisation, wrong role
        ("pathologist", 403, None),
        ("lab_admin", 403, None),
        ("outsider", 200, False),  # unrelated organisation: its own (empty) list
        ("other_pathologist", 403, None),
        (ANON, 401, None),
    ],
)
def test_patient_list(world, client_for, name, expected, sees_patient):
    body = _check(client_for(who(world, name)).get("/api/patients/"), expected)
    if body is not None:
        assert (world.patient.pk in _ids(body)) is sees_patient


@pytest.mark.parametrize(
    "name, expected",
    [
        ("clinician", 201),
        ("colleague", 201),
        ("site_admin", 403),
        ("pathologist", 403),
        ("lab_admin", 403),
        ("outsider", 201),  # registers at their own organisation
        ("other_pathologist", 403),
        (ANON, 401),
    ],
)
def test_patient_create(world, client_for, name, expected):
    user = who(world, name)
    payload = {"mrn": "MRN-NEW", "given_name": "Ana", "family_name": "Ruiz", "sex": "F", "date_of_birth": "2016-03-01"}
    body = _check(client_for(user).post("/api/patients/", payload, format="json"), expected)
    created = Patient.objects.filter(mrn="MRN-NEW")
    if body is None:
        assert not created.exists()
    else:
        assert created.get().organisation_id == user.organisation_id
        assert body["mrn"] == "MRN-NEW"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("clinician", 200),
        ("colleague", 200),
        ("site_admin", 403),
        ("pathologist", 403),
        ("lab_admin", 403),
        ("outsider", 404),
        ("other_pathologist", 403),
        (ANON, 401),
    ],
)
def test_patient_detail(world, client_for, name, expected):
    body = _check(client_for(who(world, name)).get(f"/api/patients/{world.patient.pk}/"), expected)
    if body is not None:
        assert body["mrn"] == "MRN-1"


def test_patient_detail_of_missing_and_invisible_ids_look_the_same(world, client_for):
    other = Patient.objects.create(
        organisation=world.other_site,
        mrn="X-1",
        given_name="Zed",
        family_name="Other",
        sex="M",
        date_of_birth=date(2011, 1, 1),
        created_by=world.outsider,
    )
    invisible = client_for(world.clinician).get(f"/api/patients/{other.pk}/")
    missing = client_for(world.clinician).get("/api/patients/999999/")
    assert assert_error(invisible, 404) == assert_error(missing, 404)


# --------------------------------------------------------------------------------------------
# Cases


@pytest.mark.parametrize(
    "name, expected, sees_case",
    [
        ("clinician", 200, True),
        ("colleague", 200, True),
        ("pathologist", 200, True),
        ("pathologist2", 200, True),
        ("site_admin", 403, None),
        ("lab_admin", 403, None),
        ("outsider", 200, False),
        ("other_pathologist", 200, False),
        (ANON, 401, None),
    ],
)
def test_case_list(world, case, client_for, name, expected, sees_case):
    body = _check(client_for(who(world, name)).get("/api/cases/"), expected)
    if body is not None:
        assert (case.pk in _ids(body)) is sees_case


@pytest.mark.parametrize(
    "name, expected",
    [
        ("clinician", 201),
        ("colleague", 201),
        ("site_admin", 403),
        ("pathologist", 403),
        ("lab_admin", 403),
        ("outsider", 400),  # a clinician, but world.patient is another organisation's: "no such patient"
        ("other_pathologist", 403),
        (ANON, 401),
    ],
)
def test_case_create(world, client_for, name, expected):
    payload = {"patient": world.patient.pk, "images": [smear_upload()], "clinical_notes": "Pallor."}
    response = client_for(who(world, name)).post("/api/cases/", payload, format="multipart")
    if expected == 400:
        error = assert_error(response, 400, "invalid")
        assert set(error["details"]) == {"patient"}
    else:
        _check(response, expected)
    assert Case.objects.count() == (1 if expected == 201 else 0)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("clinician", 200),
        ("colleague", 200),
        ("pathologist", 200),
        ("pathologist2", 200),
        ("site_admin", 403),
        ("lab_admin", 403),
        ("outsider", 404),
        ("other_pathologist", 404),  # a laboratory the case was not referred to
        (ANON, 401),
    ],
)
def test_case_detail(world, case, client_for, name, expected):
    body = _check(client_for(who(world, name)).get(f"/api/cases/{case.pk}/"), expected)
    if body is not None:
        assert body["id"] == case.pk and len(body["smears"]) == 1


@pytest.mark.parametrize(
    "name, expected",
    [
        ("clinician", 200),
        ("colleague", 200),
        ("pathologist", 200),
        ("pathologist2", 200),
        ("site_admin", 403),
        ("lab_admin", 403),
        ("outsider", 404),
        ("other_pathologist", 404),
        (ANON, 401),
    ],
)
def test_smear_image(world, case, client_for, name, expected):
    smear = case.smears.get()
    response = client_for(who(world, name)).get(f"/api/smears/{smear.pk}/image/")
    if expected == 200:
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == smear.image.open("rb").read()
    else:
        _check(response, expected)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("pathologist", 200),
        ("pathologist2", 200),
        ("clinician", 403),  # sees the case, may not sign it
        ("colleague", 403),
        ("site_admin", 403),
        ("lab_admin", 403),  # the laboratory's admin: wrong role
        ("outsider", 404),
        ("other_pathologist", 404),
        (ANON, 401),
    ],
)
def test_case_sign(world, case, client_for, name, expected):
    response = client_for(who(world, name)).post(
        f"/api/cases/{case.pk}/sign/", {"password": DEMO_PASSWORD, "diagnosis": "pre_b"}, format="json"
    )
    _check(response, expected)
    case.refresh_from_db()
    assert (case.status == Case.Status.SIGNED) is (expected == 200)
    assert Review.objects.filter(case=case).count() == (1 if expected == 200 else 0)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("pathologist", 200),
        ("pathologist2", 200),
        ("clinician", 403),
        ("site_admin", 403),
        ("lab_admin", 403),
        ("outsider", 404),
        ("other_pathologist", 404),
        (ANON, 401),
    ],
)
def test_case_amend(world, case, client_for, name, expected):
    client_for(world.pathologist).post(
        f"/api/cases/{case.pk}/sign/", {"password": DEMO_PASSWORD, "diagnosis": "pre_b"}, format="json"
    )
    response = client_for(who(world, name)).post(
        f"/api/cases/{case.pk}/amend/",
        {"password": DEMO_PASSWORD, "diagnosis": "pro_b", "reason": "Second opinion."},
        format="json",
    )
    _check(response, expected)
    case.refresh_from_db()
    assert (case.status == Case.Status.AMENDED) is (expected == 200)
    assert Review.objects.filter(case=case, kind="amendment").count() == (1 if expected == 200 else 0)


@pytest.mark.parametrize(
    "name, expected, sees_case",
    [
        ("pathologist", 200, True),
        ("pathologist2", 200, True),
        ("other_pathologist", 200, False),  # their own laboratory's queue
        ("clinician", 403, None),
        ("lab_admin", 403, None),
        ("site_admin", 403, None),
        ("outsider", 403, None),
        (ANON, 401, None),
    ],
)
def test_review_queue(world, case, client_for, name, expected, sees_case):
    body = _check(client_for(who(world, name)).get("/api/review-queue/"), expected)
    if body is not None:
        assert (case.pk in _ids(body)) is sees_case


# --------------------------------------------------------------------------------------------
# Users (lab admins)


@pytest.mark.parametrize(
    "name, expected, members",
    [
        ("lab_admin", 200, {"paula_pathologist", "peter_pathologist", "lars_labadmin"}),
        ("site_admin", 200, {"clara_clinician", "colin_colleague", "sian_siteadmin"}),
        ("other_admin", 200, {"olga_otherlab", "otto_otheradmin"}),
        ("pathologist", 403, None),
        ("clinician", 403, None),
        ("other_pathologist", 403, None),
        (ANON, 401, None),
    ],
)
def test_user_list(world, other_admin, client_for, name, expected, members):
    body = _check(client_for(who(world, name, {"other_admin": other_admin})).get("/api/users/"), expected)
    if body is not None:
        assert {u["username"] for u in body["results"]} == members


@pytest.mark.parametrize(
    "name, expected",
    [("lab_admin", 201), ("site_admin", 201), ("pathologist", 403), ("clinician", 403), (ANON, 401)],
)
def test_user_create(world, client_for, name, expected):
    user = who(world, name)
    payload = {"username": "new_user", "password": "a-long-enough-passphrase", "role": "lab_admin"}
    body = _check(client_for(user).post("/api/users/", payload, format="json"), expected)
    if body is None:
        assert not User.objects.filter(username="new_user").exists()
    else:
        assert User.objects.get(username="new_user").organisation_id == user.organisation_id


@pytest.mark.parametrize(
    "name, expected",
    [
        ("lab_admin", 200),
        ("pathologist", 403),  # right organisation, wrong role
        ("site_admin", 404),  # an administrator, of an unrelated organisation
        ("other_admin", 404),
        ("other_pathologist", 403),
        (ANON, 401),
    ],
)
def test_user_detail_and_update(world, other_admin, client_for, name, expected):
    client = client_for(who(world, name, {"other_admin": other_admin}))
    target = world.pathologist2
    _check(client.get(f"/api/users/{target.pk}/"), expected)
    _check(client.patch(f"/api/users/{target.pk}/", {"is_active": False}, format="json"), expected)
    target.refresh_from_db()
    assert target.is_active is (expected != 200)


# --------------------------------------------------------------------------------------------
# Audit trail (lab admins)


@pytest.mark.parametrize(
    "name, expected, sees_case_events",
    [
        ("lab_admin", 200, True),  # the case was referred to the lab
        ("site_admin", 200, True),  # the case was submitted by the site
        ("other_admin", 200, False),
        ("pathologist", 403, None),
        ("clinician", 403, None),
        ("outsider", 403, None),
        (ANON, 401, None),
    ],
)
def test_audit_event_list(world, case, other_admin, client_for, name, expected, sees_case_events):
    body = _check(client_for(who(world, name, {"other_admin": other_admin})).get("/api/audit-events/"), expected)
    if body is not None:
        assert any(event["case"] == case.pk for event in body["results"]) is sees_case_events


@pytest.mark.parametrize(
    "name, expected",
    [
        ("lab_admin", 200),
        ("site_admin", 200),
        ("other_admin", 404),
        ("pathologist", 403),
        ("outsider", 403),
        ("other_pathologist", 403),
        (ANON, 401),
    ],
)
def test_audit_event_detail(world, case, other_admin, client_for, name, expected):
    event = AuditEvent.objects.get(case=case, action=AuditEvent.Action.SUBMITTED)
    body = _check(
        client_for(who(world, name, {"other_admin": other_admin})).get(f"/api/audit-events/{event.pk}/"), expected
    )
    if body is not None:
        assert body["action"] == "submitted" and body["actor"]["username"] == "clara_clinician"


# --------------------------------------------------------------------------------------------
# Me


@pytest.mark.parametrize(
    "name, role, organisation",
    [
        ("clinician", "clinician", "St Mary's Clinic"),
        ("pathologist", "pathologist", "Central Haematology Laboratory"),
        ("lab_admin", "lab_admin", "Central Haematology Laboratory"),
        ("outsider", "clinician", "Harbour Hospital"),
    ],
)
def test_me(world, client_for, name, role, organisation):
    body = _check(client_for(who(world, name)).get("/api/me/"), 200)
    assert body["username"] == getattr(world, name).username
    assert body["role"] == role and body["organisation"]["name"] == organisation


def test_me_anonymous(client_for, db):
    _check(client_for(None).get("/api/me/"), 401)


def test_me_superuser_without_organisation(client_for, db):
    admin = User.objects.create_superuser("root_admin", "root@example.org", "x-very-long-password")
    body = _check(client_for(admin).get("/api/me/"), 200)
    assert body["organisation"] is None and body["role"] == ""

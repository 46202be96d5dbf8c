"""Patients: registration, search, validation, pagination."""

from datetime import date, timedelta

import pytest

from audit.models import AuditEvent
from cases.models import Patient
from tests.api.conftest import assert_error

VALID = {"mrn": "MRN-9", "given_name": "Ana", "family_name": "Ruiz", "sex": "F", "date_of_birth": "2016-03-01"}


def test_register_a_patient(world, client_for):
    response = client_for(world.clinician).post("/api/patients/", VALID, format="json")
    assert response.status_code == 201
    body = response.json()
    patient = Patient.objects.get(pk=body["id"])
    assert response["Location"] == f"/api/patients/{patient.pk}/"
    assert body == {
        "id": patient.pk,
        "mrn": "MRN-9",
        "given_name": "Ana",
        "family_name": "Ruiz",
        "sex": "F",
        "date_of_birth": "2016-03-01",
        "created_at": body["created_at"],
    }
    assert patient.organisation == world.site and patient.created_by == world.clinician
    assert AuditEvent.objects.filter(action="created", patient=patient).exists()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"sex": "Q"}, "sex"),
        ({"date_of_birth": "17/05/2012"}, "date_of_birth"),
        ({"date_of_birth": 20120517}, "date_of_birth"),
        ({"date_of_birth": (date.today() + timedelta(days=2)).isoformat()}, "date_of_birth"),  # a service rule
        ({"mrn": ""}, "mrn"),
        ({"mrn": "   "}, "mrn"),
        ({"mrn": "M" * 65}, "mrn"),
        ({"mrn": "MRN-1"}, "mrn"),  # already registered at this organisation
        ({"given_name": None}, "given_name"),
        ({"family_name": ["Ruiz"]}, "family_name"),
        ({"id": 5}, "id"),  # read-only
        ({"organisation": 3}, "organisation"),  # not something a client chooses
    ],
)
def test_registration_refuses_malformed_input_naming_the_field(world, client_for, changes, field):
    response = client_for(world.clinician).post("/api/patients/", {**VALID, **changes}, format="json")
    error = assert_error(response, 400)
    assert field in error["details"], error
    assert not Patient.objects.filter(given_name="Ana").exists()


def test_same_mrn_at_another_organisation_is_another_patient(world, client_for):
    response = client_for(world.outsider).post("/api/patients/", {**VALID, "mrn": "MRN-1"}, format="json")
    assert response.status_code == 201
    assert Patient.objects.filter(mrn="MRN-1").count() == 2


def test_search_by_mrn_and_name(world, client_for):
    world.new_patient(mrn="ZX-77", given_name="Bea", family_name="Quinn")
    world.new_patient(mrn="ZX-78", given_name="Carl", family_name="Quinn")
    client = client_for(world.clinician)

    def mrns(query):
        response = client.get("/api/patients/", {"search": query})
        assert response.status_code == 200
        return sorted(p["mrn"] for p in response.json()["results"])

    assert mrns("zx-77") == ["ZX-77"]
    assert mrns("quinn") == ["ZX-77", "ZX-78"]
    assert mrns("quinn carl") == ["ZX-78"]  # every word must match
    assert mrns("alex") == ["MRN-1"]
    assert mrns("nobody") == []
    # The outsider's search never finds this organisation's patients.
    assert client_for(world.outsider).get("/api/patients/", {"search": "quinn"}).json()["results"] == []


def test_retrieve_is_audited(world, client_for):
    response = client_for(world.clinician).get(f"/api/patients/{world.patient.pk}/")
    assert response.status_code == 200
    assert AuditEvent.objects.filter(action="viewed", patient=world.patient, actor=world.clinician).exists()


def test_pagination(world, client_for):
    for n in range(30):
        world.new_patient(mrn=f"P-{n:02d}", family_name=f"Family{n:02d}")
    client = client_for(world.clinician)

    first = client.get("/api/patients/").json()
    assert first["count"] == 31 and len(first["results"]) == 25
    assert first["previous"] is None and first["next"].endswith("/api/patients/?page=2")
    second = client.get("/api/patients/", {"page": 2}).json()
    assert len(second["results"]) == 6 and second["next"] is None
    seen = {p["id"] for p in first["results"]} | {p["id"] for p in second["results"]}
    assert len(seen) == 31

    small = client.get("/api/patients/", {"page_size": 10, "page": 4}).json()
    assert len(small["results"]) == 1
    assert len(client.get("/api/patients/", {"page_size": 1000}).json()["results"]) == 31  # capped at 100
    assert len(client.get("/api/patients/", {"page": "last", "page_size": 10}).json()["results"]) == 1


@pytest.mark.parametrize(
    "params, field", [({"page": "abc"}, "page"), ({"page": 0}, "page"), ({"page_size": "-3"}, "page_size")]
)
def test_malformed_pagination_is_a_400(world, client_for, params, field):
    error = assert_error(client_for(world.clinician).get("/api/patients/", params), 400, "invalid")
    assert set(error["details"]) == {field}


def test_a_page_past_the_end_is_a_404(world, client_for):
    assert_error(client_for(world.clinician).get("/api/patients/", {"page": 99}), 404, "not_found")

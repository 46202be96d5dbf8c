"""Ids beyond 64 bits (in a filter or an address) are a 400 or a 404 on every database, never a 500."""

import pytest
from django.test import Client

from tests.api.conftest import assert_error

HUGE = "9223372036854775808"  # 2**63: one past the largest id any backend stores
NEGATIVE_HUGE = "-9223372036854775809"


@pytest.mark.parametrize(
    "who, url, parameter",
    [
        ("clinician", f"/api/cases/?patient={HUGE}", "patient"),
        ("pathologist", f"/api/cases/?patient={HUGE}", "patient"),
        ("lab_admin", f"/api/audit-events/?case={HUGE}", "case"),
        ("lab_admin", f"/api/audit-events/?actor={HUGE}", "actor"),
        ("lab_admin", f"/api/audit-events/?actor={'9' * 40}", "actor"),
    ],
)
def test_huge_id_filters_are_a_400_naming_the_parameter(world, client_for, who, url, parameter):
    error = assert_error(client_for(getattr(world, who)).get(url), 400, "invalid")
    assert set(error["details"]) == {parameter}


@pytest.mark.parametrize(
    "who, url",
    [
        ("clinician", f"/api/cases/{HUGE}/"),
        ("clinician", f"/api/patients/{HUGE}/"),
        ("clinician", f"/api/smears/{HUGE}/image/"),
        ("clinician", f"/api/cases/{HUGE}/analysis/"),
        ("pathologist", f"/api/cases/{HUGE}/"),
        ("lab_admin", f"/api/users/{HUGE}/"),
        ("lab_admin", f"/api/users/{NEGATIVE_HUGE}/"),
    ],
)
def test_huge_ids_in_api_addresses_are_a_404(world, client_for, who, url):
    assert_error(client_for(getattr(world, who)).get(url), 404)


def test_a_huge_analysis_version_shows_the_latest_analysis(world, client_for):
    case = world.submit_case()
    response = client_for(world.pathologist).get(f"/api/cases/{case.pk}/analysis/?version={HUGE}")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "who, url",
    [
        ("clinician", f"/cases/{HUGE}/"),
        ("clinician", f"/patients/{HUGE}/"),
        ("clinician", f"/smears/{HUGE}/image/"),
        ("pathologist", f"/cases/{HUGE}/review/"),
        ("lab_admin", f"/accounts/users/{HUGE}/"),
    ],
)
def test_huge_ids_in_portal_addresses_are_a_404(world, who, url):
    client = Client()
    client.force_login(getattr(world, who))
    assert client.get(url).status_code == 404


def test_huge_filters_in_the_portal_are_ignored_or_refused(world):
    client = Client()
    client.force_login(world.lab_admin)
    for query in (f"?case={HUGE}", f"?actor={HUGE}", f"?page={HUGE}"):
        assert client.get("/audit/" + query).status_code in (200, 400, 404)


def test_huge_ids_in_request_bodies_are_a_400_naming_the_field(world, client_for):
    from tests.conftest import smear_upload

    for field in ("patient", "laboratory", "model_version"):
        data = {"patient": world.patient.pk, "images": [smear_upload()], field: HUGE}
        error = assert_error(client_for(world.clinician).post("/api/cases/", data, format="multipart"), 400, "invalid")
        assert field in error["details"], error
    case = world.submit_case()
    response = client_for(world.pathologist).post(
        f"/api/cases/{case.pk}/analysis/rerun/", {"model_version": int(HUGE)}, format="json"
    )
    assert set(assert_error(response, 400, "invalid")["details"]) == {"model_version"}

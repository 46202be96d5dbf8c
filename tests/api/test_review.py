"""Pathologists: review queue, signing, amending; state rules and malformed input."""

import pytest

from audit.models import AuditEvent
from cases.models import Case, Review
from cases.services import case_move
from tests.api.conftest import assert_error
from tests.conftest import DEMO_PASSWORD


def _sign(client, case, **payload):
    payload.setdefault("password", DEMO_PASSWORD)  # the electronic signature
    return client.post(f"/api/cases/{case.pk}/sign/", payload, format="json")


def _amend(client, case, **payload):
    payload.setdefault("password", DEMO_PASSWORD)
    return client.post(f"/api/cases/{case.pk}/amend/", payload, format="json")


def test_sign_returns_the_signed_case(world, case, client_for):
    response = _sign(client_for(world.pathologist), case, diagnosis="early_pre_b", comment="Typical blasts.")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "signed" and body["signed_by"]["username"] == "paula_pathologist"
    assert body["current_diagnosis"]["diagnosis"] == "early_pre_b"
    assert [d["kind"] for d in body["diagnoses"]] == ["signature"]
    assert AuditEvent.objects.filter(action="signed", case=case, actor=world.pathologist).exists()


def test_sign_accepts_a_form_encoded_body(world, case, client_for):
    response = client_for(world.pathologist).post(
        f"/api/cases/{case.pk}/sign/", {"password": DEMO_PASSWORD, "diagnosis": "benign"}
    )
    assert response.status_code == 200


def test_a_second_signature_is_a_409_naming_the_first_signer(world, case, client_for):
    assert _sign(client_for(world.pathologist), case, diagnosis="pre_b").status_code == 200
    error = assert_error(_sign(client_for(world.pathologist2), case, diagnosis="benign"), 409, "already_signed")
    assert "Paula Tester" in error["message"]
    assert error["details"]["signed_by"] == "Paula Tester" and error["details"]["signed_at"]
    assert Review.objects.filter(case=case).count() == 1
    assert AuditEvent.objects.filter(action="sign_refused", case=case, actor=world.pathologist2).exists()


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "diagnosis"),
        ({"diagnosis": "leukaemia"}, "diagnosis"),  # not a Diagnosis
        ({"diagnosis": None}, "diagnosis"),
        ({"diagnosis": 3}, "diagnosis"),
        ({"diagnosis": "benign", "comment": {"a": 1}}, "comment"),
        ({"diagnosis": "benign", "signed_by": 1}, "signed_by"),
    ],
)
def test_malformed_signature_is_a_400_naming_the_field(world, case, client_for, payload, field):
    error = assert_error(
        client_for(world.pathologist).post(f"/api/cases/{case.pk}/sign/", payload, format="json"), 400, "invalid"
    )
    assert field in error["details"]
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED


def test_amend_records_who_what_and_why(world, case, client_for):
    _sign(client_for(world.pathologist), case, diagnosis="pre_b")
    response = _amend(
        client_for(world.pathologist2), case, diagnosis="pro_b", reason="  Immunophenotype came back. ", comment=""
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "amended"
    assert body["current_diagnosis"]["reason"] == "Immunophenotype came back."
    assert [d["diagnosis"] for d in body["diagnoses"]] == ["pre_b", "pro_b"]
    # Amending again is allowed (amended → amended).
    assert _amend(client_for(world.pathologist), case, diagnosis="pre_b", reason="Reviewed again.").status_code == 200


def test_amending_an_unsigned_case_is_an_invalid_transition(world, case, client_for):
    error = assert_error(
        _amend(client_for(world.pathologist), case, diagnosis="pro_b", reason="Why not."), 400, "invalid_transition"
    )
    assert "sign" in error["message"]
    assert not Review.objects.exists()


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"diagnosis": "pro_b"}, "reason"),
        ({"diagnosis": "pro_b", "reason": "   "}, "reason"),
        ({"diagnosis": "unknown", "reason": "x"}, "diagnosis"),
        ({"reason": "x"}, "diagnosis"),
    ],
)
def test_malformed_amendment_is_a_400_naming_the_field(world, case, client_for, payload, field):
    _sign(client_for(world.pathologist), case, diagnosis="pre_b")
    error = assert_error(
        client_for(world.pathologist).post(f"/api/cases/{case.pk}/amend/", payload, format="json"), 400, "invalid"
    )
    assert field in error["details"]
    assert Review.objects.filter(kind="amendment").count() == 0


def test_sign_on_an_unknown_case_is_a_404(world, client_for):
    assert_error(
        client_for(world.pathologist).post(
            "/api/cases/999999/sign/", {"password": DEMO_PASSWORD, "diagnosis": "benign"}, format="json"
        ),
        404,
    )


def test_sign_while_analysing_is_allowed(world, case, client_for):
    case_move(case, Case.Status.ANALYSING)
    assert _sign(client_for(world.pathologist), case, diagnosis="benign").status_code == 200


def test_review_queue_is_urgent_first_then_oldest_and_unsigned_only(world, client_for):
    old_routine = world.submit_case(priority="routine")
    old_urgent = world.submit_case(priority="urgent")
    new_routine = world.submit_case(priority="routine")
    new_urgent = world.submit_case(priority="urgent")
    signed = world.submit_case(priority="urgent")
    _sign(client_for(world.pathologist), signed, diagnosis="benign")

    body = client_for(world.pathologist2).get("/api/review-queue/").json()
    assert [c["id"] for c in body["results"]] == [old_urgent.pk, new_urgent.pk, old_routine.pk, new_routine.pk]
    assert body["count"] == 4
    first = body["results"][0]
    assert first["priority"] == "urgent" and first["patient"]["mrn"] == "MRN-1" and first["site"]["id"] == world.site.pk

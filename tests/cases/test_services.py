"""Clinical services: transitions, signing, amendments, all-or-nothing submission, audit."""

import re
from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Organisation, ReferralLink
from audit.models import AuditEvent
from cases.models import Case, Review, Smear
from cases.services import case_amend, case_move, case_sign, patient_register
from core.errors import AlreadySigned, DomainError, InvalidTransition, NotAllowed, UploadRejected
from tests.conftest import smear_upload


def test_register_patient_and_duplicate_mrn_is_refused(world):
    patient = patient_register(
        user=world.clinician,
        mrn=" MRN-77 ",
        given_name="Ana",
        family_name="Ruiz",
        sex="F",
        date_of_birth=date(2016, 3, 1),
    )
    assert patient.mrn == "MRN-77" and patient.organisation == world.site
    with pytest.raises(DomainError, match="already registered"):
        patient_register(
            user=world.colleague,
            mrn="MRN-77",
            given_name="X",
            family_name="Y",
            sex="M",
            date_of_birth=date(2016, 3, 1),
        )
    # The same number at another organisation is another patient.
    other = patient_register(
        user=world.outsider,
        mrn="MRN-77",
        given_name="Bo",
        family_name="Lee",
        sex="M",
        date_of_birth=date(2010, 1, 1),
    )
    assert other.organisation == world.other_site
    assert AuditEvent.objects.filter(action="created", patient=patient, actor=world.clinician).exists()


def test_only_clinicians_register_patients_and_no_future_birth_dates(world):
    with pytest.raises(NotAllowed):
        patient_register(
            user=world.pathologist, mrn="P", given_name="A", family_name="B", sex="F", date_of_birth=date(2000, 1, 1)
        )
    with pytest.raises(DomainError, match="future"):
        patient_register(
            user=world.clinician,
            mrn="P",
            given_name="A",
            family_name="B",
            sex="F",
            date_of_birth=timezone.localdate() + timedelta(days=1),
        )


def test_submit_stores_smears_and_records_audit(world):
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.jpg", fmt="JPEG")], priority="urgent")
    assert case.status == Case.Status.SUBMITTED
    assert case.laboratory == world.lab and case.site == world.site
    smears = list(case.smears.all())
    assert [s.original_filename for s in smears] == ["a.png", "b.jpg"]
    assert {s.format for s in smears} == {"PNG", "JPEG"}
    for smear in smears:
        assert smear.image.storage.exists(smear.image.name)
        # Internal names only: the uploaded name is metadata.
        assert re.fullmatch(r"smears/\d+/\d+/[0-9a-f]{32}\.(png|jpg)", smear.image.name)
    assert AuditEvent.objects.filter(action="submitted", case=case).count() == 1


def test_one_bad_file_creates_no_case_and_stores_nothing(world, settings):
    bad = SimpleUploadedFile("notes.jpg", b"this is a text file, not an image", content_type="image/jpeg")
    with pytest.raises(UploadRejected) as error:
        world.submit_case(files=[smear_upload("good.png"), bad])
    assert list(error.value.details) == ["notes.jpg"]
    assert not Case.objects.exists() and not Smear.objects.exists()
    media = settings.MEDIA_ROOT
    assert not media.exists() or not any(path.is_file() for path in media.rglob("*"))


def test_an_uploads_smears_are_inserted_by_one_statement_in_file_order(world):
    names = ["c.png", "a.png", "d.png", "b.png"]
    with CaptureQueriesContext(connection) as queries:
        case = world.submit_case(files=[smear_upload(name) for name in names])
    table = Smear._meta.db_table
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(f'INSERT INTO "{table}"')]
    assert len(inserts) == 1
    assert [smear.original_filename for smear in Smear.objects.filter(case=case).order_by("pk")] == names


def test_laboratory_must_be_chosen_among_linked_ones(world):
    with pytest.raises(DomainError, match="does not refer"):
        world.submit_case(laboratory=world.other_lab)
    second = Organisation.objects.create(name="Second Lab", kind="reading")
    ReferralLink.objects.create(site=world.site, laboratory=second)
    with pytest.raises(DomainError, match="Choose the reading laboratory"):
        world.submit_case()
    assert world.submit_case(laboratory=second).laboratory == second


def test_clinician_cannot_submit_for_another_organisations_patient(world):
    from cases.services import case_submit

    foreign = world.new_patient(mrn="F-1")
    foreign.organisation = world.other_site
    foreign.save()
    with pytest.raises(DomainError, match="not registered at your organisation"):
        case_submit(user=world.clinician, patient=foreign, files=[smear_upload()])


def test_sign_then_second_signature_names_the_first_signer(world):
    case = world.submit_case()
    review = case_sign(
        signature_method="password", user=world.pathologist, case=case, diagnosis="pre_b", comment="Typical blasts."
    )
    assert review.kind == Review.Kind.SIGNATURE
    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED and case.signed_by == world.pathologist
    stale = Case.objects.get(pk=case.pk)
    with pytest.raises(AlreadySigned) as error:
        case_sign(signature_method="password", user=world.pathologist2, case=stale, diagnosis="benign")
    assert str(world.pathologist) in error.value.message
    assert Review.objects.filter(case=case).count() == 1
    assert AuditEvent.objects.filter(action="sign_refused", actor=world.pathologist2).exists()


def test_signing_checks_role_laboratory_and_diagnosis(world):
    case = world.submit_case()
    with pytest.raises(NotAllowed):
        case_sign(signature_method="password", user=world.clinician, case=case, diagnosis="benign")
    with pytest.raises(NotAllowed):
        case_sign(signature_method="password", user=world.other_pathologist, case=case, diagnosis="benign")
    with pytest.raises(DomainError, match="Unknown diagnosis"):
        case_sign(signature_method="password", user=world.pathologist, case=case, diagnosis="leukaemia-ish")
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED


def test_signed_review_is_read_only(world):
    case = world.submit_case()
    review = case_sign(signature_method="password", user=world.pathologist, case=case, diagnosis="pro_b")
    review.diagnosis = "benign"
    with pytest.raises(ValidationError):
        review.save()


def test_amendment_keeps_the_signed_version(world):
    case = world.submit_case()
    with pytest.raises(InvalidTransition):
        case_amend(signature_method="password", user=world.pathologist, case=case, diagnosis="benign", reason="x")
    first = case_sign(signature_method="password", user=world.pathologist, case=case, diagnosis="pre_b")
    with pytest.raises(DomainError, match="Say why"):
        case_amend(signature_method="password", user=world.pathologist2, case=case, diagnosis="benign", reason="  ")
    amendment = case_amend(
        signature_method="password",
        user=world.pathologist2,
        case=case,
        diagnosis="early_pre_b",
        reason="Flow cytometry result.",
    )
    case.refresh_from_db()
    assert case.status == Case.Status.AMENDED
    assert amendment.supersedes == first and amendment.signed_by == world.pathologist2
    assert case.current_diagnosis == amendment
    assert Review.objects.get(pk=first.pk).diagnosis == "pre_b"
    event = AuditEvent.objects.get(action="amended", case=case)
    assert event.detail == {
        "previous": "pre_b",
        "diagnosis": "early_pre_b",
        "reason": "Flow cytometry result.",
        "signature_method": "password",
    }
    again = case_amend(
        signature_method="password", user=world.pathologist, case=case, diagnosis="pre_b", reason="Second opinion."
    )
    assert again.supersedes == amendment


def test_invalid_transitions_raise(world):
    case = world.submit_case()
    case_move(case, Case.Status.ANALYSING)
    case_move(case, Case.Status.AWAITING_REVIEW)
    assert case.status == Case.Status.AWAITING_REVIEW
    case_sign(signature_method="password", user=world.pathologist, case=case, diagnosis="benign")
    with pytest.raises(InvalidTransition, match="cannot become analysing"):
        case_move(case, Case.Status.ANALYSING)
    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED


def test_audit_events_are_append_only(world):
    case = world.submit_case()
    event = AuditEvent.objects.filter(case=case).first()
    event.action = "viewed"
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()

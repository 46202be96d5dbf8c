"""Portal flows: patients, case submission, the review queue, signing, amending, images, audit."""

import io
from datetime import date, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organisation, ReferralLink
from audit.models import AuditEvent
from audit.services import audit
from cases.models import Case, Patient, Smear
from tests.conftest import DEMO_PASSWORD, png_bytes, smear_upload

pytestmark = pytest.mark.django_db


def text(response):
    return response.content.decode()


# --- Home ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who,target",
    [
        ("clinician", "case-list"),
        ("pathologist", "review-queue"),
        ("lab_admin", "user-list"),
        ("site_admin", "user-list"),
    ],
)
def test_home_redirects_by_role(login, world, who, target):
    response = login(getattr(world, who)).get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == reverse(target)


def test_home_sends_superuser_to_admin(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.org", "x" * 12)
    client.force_login(admin)
    response = client.get(reverse("home"))
    assert response["Location"] == reverse("admin:index")


def test_home_without_role_is_403(client, django_user_model, world):
    nobody = django_user_model.objects.create_user("nobody", password="x" * 12, organisation=world.site)
    client.force_login(nobody)
    assert client.get(reverse("home")).status_code == 403


def test_home_anonymous_goes_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_page_and_login(client, world):
    from tests.conftest import DEMO_PASSWORD

    response = client.get(reverse("login"))
    assert response.status_code == 200
    body = text(response)
    assert "vendor/bootstrap-5.3.9/bootstrap.min.css" in body
    assert "cdn" not in body.lower()
    response = client.post(reverse("login"), {"username": world.clinician.username, "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in text(response)
    response = client.post(reverse("login"), {"username": world.clinician.username, "password": DEMO_PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


# --- Patients -----------------------------------------------------------------------------------


def test_register_patient(login, world):
    client = login(world.clinician)
    response = client.post(
        reverse("patient-create"),
        {
            "mrn": " MRN-77 ",
            "given_name": "Jo",
            "family_name": "Smith",
            "sex": "M",
            "date_of_birth": "2016-03-04",
        },
    )
    patient = Patient.objects.get(mrn="MRN-77")
    assert response["Location"] == reverse("patient-detail", args=[patient.pk])
    assert patient.organisation == world.site
    assert patient.created_by == world.clinician
    page = text(client.get(response["Location"]))
    assert "Patient Jo Smith (MRN-77) registered." in page
    assert f"{reverse('case-create')}?patient={patient.pk}" in page


def test_register_patient_duplicate_mrn_is_explained(login, world):
    client = login(world.clinician)
    response = client.post(
        reverse("patient-create"),
        {
            "mrn": "MRN-1",
            "given_name": "Jo",
            "family_name": "Smith",
            "sex": "M",
            "date_of_birth": "2016-03-04",
        },
    )
    assert response.status_code == 200
    assert "already registered at your organisation" in text(response)
    assert Patient.objects.filter(mrn="MRN-1").count() == 1


def test_register_patient_future_birth_date(login, world):
    client = login(world.clinician)
    tomorrow = timezone.localdate() + timedelta(days=1)
    response = client.post(
        reverse("patient-create"),
        {
            "mrn": "MRN-9",
            "given_name": "Jo",
            "family_name": "Smith",
            "sex": "M",
            "date_of_birth": tomorrow.isoformat(),
        },
    )
    assert response.status_code == 200
    assert "in the future" in text(response)
    assert not Patient.objects.filter(mrn="MRN-9").exists()


def test_patient_search_and_pagination(login, world):
    for n in range(30):
        world.new_patient(mrn=f"P-{n:03d}", family_name=f"Family{n:03d}")
    client = login(world.clinician)
    response = client.get(reverse("patient-list"), {"q": "Family007"})
    assert [p.mrn for p in response.context["page_obj"]] == ["P-007"]
    response = client.get(reverse("patient-list"), {"q": "mrn-1"})
    assert [p.mrn for p in response.context["page_obj"]] == ["MRN-1"]
    first = client.get(reverse("patient-list"))
    assert first.context["page_obj"].paginator.num_pages == 2
    second = client.get(reverse("patient-list"), {"page": 2})
    assert len(second.context["page_obj"]) == 6


def test_patient_detail_lists_their_cases(login, world, case):
    other = world.new_patient()
    other_case = world.submit_case(patient=other)
    page = text(login(world.clinician).get(reverse("patient-detail", args=[world.patient.pk])))
    assert case.reference in page
    assert other_case.reference not in page


# --- Submitting a case --------------------------------------------------------------------------


def test_case_form_preselects_patient_and_hides_single_laboratory(login, world):
    response = login(world.clinician).get(reverse("case-create"), {"patient": world.patient.pk})
    form = response.context["form"]
    assert form.initial["patient"] == world.patient
    assert "laboratory" not in form.fields
    assert "multiple" in text(response)


def test_submit_case(login, world, settings):
    client = login(world.clinician)
    response = client.post(
        reverse("case-create"),
        {
            "patient": world.patient.pk,
            "priority": "urgent",
            "clinical_notes": "WBC 45, blasts on film.",
            "images": [smear_upload("a.png"), smear_upload("b.jpg", fmt="JPEG", content_type="image/jpeg")],
        },
    )
    case = Case.objects.get()
    assert response["Location"] == reverse("case-detail", args=[case.pk])
    assert case.priority == Case.Priority.URGENT
    assert case.laboratory == world.lab
    assert case.submitted_by == world.clinician
    assert case.smears.count() == 2
    page = text(client.get(response["Location"]))
    assert f"Case {case.reference} submitted to {world.lab} with 2 images." in page
    assert "WBC 45, blasts on film." in page
    assert "URGENT" in page


def test_submit_case_with_one_bad_file_creates_nothing(login, world, settings):
    client = login(world.clinician)
    response = client.post(
        reverse("case-create"),
        {
            "patient": world.patient.pk,
            "priority": "routine",
            "images": [
                smear_upload("good-1.png"),
                SimpleUploadedFile("report.png", b"%PDF-1.7 this is a PDF", content_type="image/png"),
                smear_upload("good-2.png"),
            ],
        },
    )
    assert response.status_code == 200
    assert not Case.objects.exists()
    assert not Smear.objects.exists()
    page = text(response)
    assert "No case was created" in page
    assert "report.png" in page
    assert "PDF" in page  # why: it looks like a PDF document
    assert "good-1.png" not in page and "good-2.png" not in page
    assert response.context["rejected_files"].keys() == {"report.png"}
    media = settings.MEDIA_ROOT / "smears"
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_submit_case_without_files(login, world):
    response = login(world.clinician).post(reverse("case-create"), {"patient": world.patient.pk, "priority": "routine"})
    assert response.status_code == 200
    assert "Choose at least one smear image." in text(response)
    assert not Case.objects.exists()


def test_laboratory_choice_when_the_site_refers_to_several(login, world):
    ReferralLink.objects.create(site=world.site, laboratory=world.other_lab)
    client = login(world.clinician)
    response = client.get(reverse("case-create"))
    assert "laboratory" in response.context["form"].fields
    assert world.other_lab.name in text(response)
    response = client.post(
        reverse("case-create"),
        {
            "patient": world.patient.pk,
            "priority": "routine",
            "images": [smear_upload()],
        },
    )
    assert response.status_code == 200
    assert "laboratory" in response.context["form"].errors
    response = client.post(
        reverse("case-create"),
        {
            "patient": world.patient.pk,
            "priority": "routine",
            "laboratory": world.other_lab.pk,
            "images": [smear_upload()],
        },
    )
    assert response.status_code == 302
    assert Case.objects.get().laboratory == world.other_lab


def test_site_without_laboratory_is_explained(login, world):
    lonely = Organisation.objects.create(name="Lonely Clinic", kind="referring")
    world.clinician.organisation = lonely
    world.clinician.save()
    patient = Patient.objects.create(
        organisation=lonely,
        mrn="L-1",
        given_name="A",
        family_name="B",
        sex="F",
        date_of_birth=date(2010, 1, 1),
        created_by=world.clinician,
    )
    response = login(world.clinician).post(
        reverse("case-create"),
        {
            "patient": patient.pk,
            "priority": "routine",
            "images": [smear_upload()],
        },
    )
    assert response.status_code == 200
    assert "no reading laboratory" in text(response)
    assert not Case.objects.exists()


# --- Case list ----------------------------------------------------------------------------------


def test_case_list_for_clinician_and_pathologist(login, world, case):
    urgent = world.submit_case(priority="urgent")
    client = login(world.colleague)
    response = client.get(reverse("case-list"))
    assert {c.pk for c in response.context["page_obj"]} == {case.pk, urgent.pk}
    assert "URGENT" in text(response)
    assert "Submitted" in text(response) or "Analysing" in text(response) or "Awaiting review" in text(response)
    response = client.get(reverse("case-list"), {"priority": "urgent"})
    assert [c.pk for c in response.context["page_obj"]] == [urgent.pk]
    response = login(world.pathologist).get(reverse("case-list"))
    assert {c.pk for c in response.context["page_obj"]} == {case.pk, urgent.pk}


# --- Review queue -------------------------------------------------------------------------------


def test_review_queue_is_urgent_first_then_oldest(login, world):
    from cases.services import case_sign

    now = timezone.now()
    routine_old = world.submit_case(priority="routine")
    urgent_new = world.submit_case(priority="urgent")
    routine_new = world.submit_case(priority="routine")
    urgent_old = world.submit_case(priority="urgent")
    signed = world.submit_case(priority="urgent")
    for case, age in [(routine_old, 50), (urgent_new, 10), (routine_new, 5), (urgent_old, 40), (signed, 60)]:
        Case.objects.filter(pk=case.pk).update(created_at=now - timedelta(hours=age))
    case_sign(signature_method="password", user=world.pathologist, case=signed, diagnosis="benign")

    response = login(world.pathologist).get(reverse("review-queue"))
    assert [c.pk for c in response.context["page_obj"]] == [
        urgent_old.pk,
        urgent_new.pk,
        routine_old.pk,
        routine_new.pk,
    ]
    page = text(response)
    assert signed.reference not in page
    assert page.index(urgent_old.reference) < page.index(urgent_new.reference) < page.index(routine_old.reference)
    assert response.context["counts"]["urgent"] == 2


# --- Signing ------------------------------------------------------------------------------------


def test_signing_flow(login, world, case):
    client = login(world.pathologist)
    page = text(client.get(reverse("case-review", args=[case.pk])))
    assert 'data-testid="sign-form"' in page
    assert "Non-diagnostic — new sample needed" in page
    assert "Waiting for a model" in page
    assert reverse("smear-image", args=[case.smears.get().pk]) in page

    response = client.post(
        reverse("case-review", args=[case.pk]),
        {
            "action": "sign",
            "sign-password": DEMO_PASSWORD,
            "sign-diagnosis": "early_pre_b",
            "sign-comment": "Many blasts.",
        },
    )
    # No other case waits: the pathologist lands back on the queue (tests/workspace: the next case).
    assert response["Location"] == reverse("review-queue")
    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED
    assert case.signed_by == world.pathologist
    review = case.diagnoses.get()
    assert (review.kind, review.diagnosis, review.comment) == ("signature", "early_pre_b", "Many blasts.")

    assert f"Case {case.reference} signed." in text(client.get(response["Location"]))
    page = text(client.get(reverse("case-review", args=[case.pk])))
    assert 'data-testid="signed-state"' in page
    assert "Signed — read-only" in page
    assert 'data-testid="sign-form"' not in page
    assert "Early Pre-B ALL" in page
    # The clinician now sees the final diagnosis on the case page.
    page = text(login(world.clinician).get(reverse("case-detail", args=[case.pk])))
    assert "Early Pre-B ALL" in page
    assert "Many blasts." in page


def test_sign_requires_a_diagnosis(login, world, case):
    response = login(world.pathologist).post(reverse("case-review", args=[case.pk]), {"action": "sign"})
    assert response.status_code == 200
    assert "diagnosis" in response.context["sign_form"].errors
    assert not case.diagnoses.exists()


def test_non_diagnostic_can_be_signed(login, world, case):
    login(world.pathologist).post(
        reverse("case-review", args=[case.pk]),
        {
            "action": "sign",
            "sign-password": DEMO_PASSWORD,
            "sign-diagnosis": "non_diagnostic",
            "sign-comment": "Clotted sample.",
        },
    )
    assert case.diagnoses.get().diagnosis == "non_diagnostic"


def test_second_signature_shows_who_signed(login, world, case):
    client = login(world.pathologist)
    client.post(
        reverse("case-review", args=[case.pk]),
        {"action": "sign", "sign-password": DEMO_PASSWORD, "sign-diagnosis": "pre_b"},
    )
    client = login(world.pathologist2)
    response = client.post(
        reverse("case-review", args=[case.pk]),
        {"action": "sign", "sign-password": DEMO_PASSWORD, "sign-diagnosis": "pro_b"},
        follow=True,
    )
    assert response.status_code == 200
    page = text(response)
    assert "already signed by Paula Tester at" in page
    assert case.diagnoses.count() == 1
    assert case.diagnoses.get().diagnosis == "pre_b"
    assert AuditEvent.objects.filter(
        case=case, action=AuditEvent.Action.SIGN_REFUSED, actor=world.pathologist2
    ).exists()


def test_unknown_action_is_refused(login, world, case):
    response = login(world.pathologist).post(reverse("case-review", args=[case.pk]), {"action": "delete"}, follow=True)
    assert "Unknown action." in text(response)
    assert not case.diagnoses.exists()


# --- Amending -----------------------------------------------------------------------------------


def test_amendment_keeps_the_signed_diagnosis_visible(login, world, signed_case):
    client = login(world.pathologist2)
    response = client.post(
        reverse("case-review", args=[signed_case.pk]),
        {
            "action": "amend",
            "amend-password": DEMO_PASSWORD,
            "amend-diagnosis": "pro_b",
            "amend-reason": "Second opinion: CD10 negative.",
        },
    )
    assert response.status_code == 302
    signed_case.refresh_from_db()
    assert signed_case.status == Case.Status.AMENDED
    signature, amendment = signed_case.diagnoses.order_by("signed_at", "pk")
    assert (signature.kind, signature.diagnosis) == ("signature", "pre_b")
    assert (amendment.kind, amendment.diagnosis, amendment.supersedes) == ("amendment", "pro_b", signature)

    for who, name in [(world.pathologist2, "case-review"), (world.clinician, "case-detail")]:
        page = text(login(who).get(reverse(name, args=[signed_case.pk])))
        history = page[page.index('data-testid="diagnosis-history"') :]
        assert "Pre-B ALL" in history and "Pro-B ALL" in history
        assert "Superseded" in history
        assert "Changed from <strong>Pre-B ALL</strong> by Peter Tester" in history
        assert "Second opinion: CD10 negative." in history
        assert "Paula Tester" in history  # who signed the original
        assert "Blasts 80 %." in history


def test_amendment_requires_a_reason(login, world, signed_case):
    response = login(world.pathologist).post(
        reverse("case-review", args=[signed_case.pk]),
        {
            "action": "amend",
            "amend-password": DEMO_PASSWORD,
            "amend-diagnosis": "pro_b",
            "amend-reason": "   ",
        },
    )
    assert response.status_code == 200
    assert "reason" in response.context["amend_form"].errors
    assert response.context["amend_open"]
    assert signed_case.diagnoses.count() == 1


def test_amending_an_unsigned_case_is_explained(login, world, case):
    response = login(world.pathologist).post(
        reverse("case-review", args=[case.pk]),
        {
            "action": "amend",
            "amend-password": DEMO_PASSWORD,
            "amend-diagnosis": "pro_b",
            "amend-reason": "oops",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "Only a signed case can be amended" in text(response)
    assert not case.diagnoses.exists()


# --- Images -------------------------------------------------------------------------------------


def _body(response):
    return b"".join(response.streaming_content)


def test_smear_image_headers(login, world, case, smear):
    response = login(world.pathologist).get(reverse("smear-image", args=[smear.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == f'inline; filename="{case.reference}-image-{smear.pk}.png"'
    cache = response["Cache-Control"]
    assert "private" in cache and "public" not in cache
    assert _body(response) == png_bytes()
    assert "first.png" not in response["Content-Disposition"]  # the uploaded name is never echoed


def test_smear_image_content_type_follows_what_is_stored(login, world):
    jpeg = world.submit_case(files=[smear_upload("x.jpeg", fmt="JPEG", content_type="image/jpeg")]).smears.get()
    buffer = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (20, 10), (1, 2, 3)).save(buffer, format="TIFF")
    tiff = world.submit_case(files=[SimpleUploadedFile("x.tif", buffer.getvalue(), "image/tiff")]).smears.get()
    client = login(world.clinician)
    assert client.get(reverse("smear-image", args=[jpeg.pk]))["Content-Type"] == "image/jpeg"
    response = client.get(reverse("smear-image", args=[tiff.pk]))
    assert response["Content-Type"] == "image/png"  # TIFF is stored re-encoded as PNG
    assert _body(response).startswith(b"\x89PNG")


def test_hostile_original_filename_is_not_used(login, world):
    upload = smear_upload('evil"; filename=x.html\r\n.png')
    smear = world.submit_case(files=[upload]).smears.get()
    response = login(world.clinician).get(reverse("smear-image", args=[smear.pk]))
    assert "evil" not in response["Content-Disposition"]
    assert "\n" not in response["Content-Disposition"]


def test_media_is_not_served_publicly(client, login, world, smear):
    assert client.get("/media/" + smear.image.name).status_code == 404
    assert login(world.clinician).get("/media/" + smear.image.name).status_code == 404


def test_missing_file_is_404(login, world, smear):
    smear.image.storage.delete(smear.image.name)
    assert login(world.pathologist).get(reverse("smear-image", args=[smear.pk])).status_code == 404


# --- Audit --------------------------------------------------------------------------------------


def test_viewing_and_signing_are_audited(login, world, case):
    before = AuditEvent.objects.count()
    login(world.clinician).get(reverse("case-detail", args=[case.pk]))
    client = login(world.pathologist)
    client.get(reverse("case-detail", args=[case.pk]))
    client.get(reverse("case-review", args=[case.pk]))
    client.post(
        reverse("case-review", args=[case.pk]),
        {"action": "sign", "sign-password": DEMO_PASSWORD, "sign-diagnosis": "benign"},
    )
    events = list(AuditEvent.objects.order_by("pk")[before:])
    summary = [(e.action, e.actor, e.detail.get("page")) for e in events]
    assert summary == [
        ("logged_in", world.clinician, None),
        ("viewed", world.clinician, "case-detail"),
        ("logged_out", world.clinician, None),
        ("logged_in", world.pathologist, None),
        ("viewed", world.pathologist, "case-detail"),  # one per case per session: not the review page too
        ("signed", world.pathologist, None),
    ]
    case_events = [e for e in events if e.action not in ("logged_in", "logged_out")]
    assert all(e.case_id == case.pk and e.patient_id == world.patient.pk for e in case_events)
    assert case_events[0].ip_address == "127.0.0.1"


def test_refused_views_are_not_audited_as_viewed(login, world, case):
    before = AuditEvent.objects.filter(action="viewed").count()
    login(world.outsider).get(reverse("case-detail", args=[case.pk]))
    login(world.clinician).get(reverse("case-review", args=[case.pk]))
    assert AuditEvent.objects.filter(action="viewed").count() == before


def test_audit_log_shows_the_organisations_trail(login, world, case):
    from accounts.models import User

    login(world.pathologist).get(reverse("case-review", args=[case.pk]))
    login(world.outsider).get(reverse("case-list"))
    response = login(world.lab_admin).get(reverse("audit-log"))
    events = list(response.context["page_obj"])
    assert any(e.action == "viewed" and e.actor == world.pathologist for e in events)
    assert any(e.action == "submitted" for e in events)
    page = text(response)
    assert case.reference in page
    # An admin of an unrelated organisation sees none of it.
    other_admin = User.objects.create_user(
        "hal_harbouradmin", password="x" * 12, organisation=world.other_site, role="lab_admin"
    )
    response = login(other_admin).get(reverse("audit-log"))
    seen = list(response.context["page_obj"])  # only its own people's sign-ins and sign-outs
    assert seen and all(e.case_id is None and e.actor.organisation == world.other_site for e in seen)
    # Filter by action.
    response = login(world.lab_admin).get(reverse("audit-log"), {"action": "submitted"})
    assert {e.action for e in response.context["page_obj"]} == {"submitted"}


def test_audit_log_is_paginated(login, world, case):
    for _ in range(55):
        audit(AuditEvent.Action.VIEWED, actor=world.pathologist, case=case, page="api-case")
    admin = login(world.lab_admin)
    response = admin.get(reverse("audit-log"))
    first = response.context["page_obj"]
    assert len(first) == 50 and first.is_first and first.newer_token is None
    assert f"before={first.older_token}" in text(response)  # keyset pages: no count, no OFFSET
    older = admin.get(reverse("audit-log"), {"before": first.older_token}).context["page_obj"]
    assert 0 < len(older) <= 50 and older.older_token is None and not older.is_first
    assert not {e.pk for e in first} & {e.pk for e in older}
    assert [e.pk for e in first] + [e.pk for e in older] == sorted(
        [e.pk for e in first] + [e.pk for e in older], reverse=True
    )
    back = admin.get(reverse("audit-log"), {"after": older.newer_token}).context["page_obj"]
    assert [e.pk for e in back] == [e.pk for e in first] and back.is_first
    assert admin.get(reverse("audit-log"), {"before": "not-a-token"}).status_code == 400


def test_clinician_may_choose_a_model_version_when_several_exist(login, world):
    from training.models import ModelVersion

    client = login(world.clinician)
    assert "model_version" not in text(client.get(reverse("case-create")))
    first = ModelVersion.objects.create(
        name="mobilenetv2-a", architecture="mobilenetv2", file_path="a.keras", sha256="0" * 64
    )
    second = ModelVersion.objects.create(name="convnet-b", architecture="convnet", file_path="b.keras", sha256="1" * 64)
    first.activate()
    page = text(client.get(reverse("case-create")))
    assert "The active model (recommended)" in page and "convnet-b" in page
    response = client.post(
        reverse("case-create"),
        {
            "patient": world.patient.pk,
            "priority": "routine",
            "clinical_notes": "",
            "model_version": second.pk,
            "images": [smear_upload("a.png")],
        },
    )
    assert response.status_code == 302
    assert Case.objects.get().requested_model_version == second

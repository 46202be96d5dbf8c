"""Cases: multipart submission (all or nothing), representation, filters, malformed input."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Organisation, ReferralLink
from audit.models import AuditEvent
from cases.models import Case, Smear
from tests.api.conftest import assert_error
from tests.conftest import DEMO_PASSWORD, smear_upload
from training.models import ModelVersion


def _submit(client, world, **overrides):
    payload = {
        "patient": world.patient.pk,
        "images": [smear_upload()],
        "clinical_notes": "Fever.",
        "priority": "urgent",
    }
    payload.update(overrides)
    return client.post("/api/cases/", payload, format="multipart")


def test_submit_a_case_with_several_images(world, client_for):
    images = [smear_upload("left.png", colour=(10, 20, 30)), smear_upload("right.jpg", size=(80, 60), fmt="JPEG")]
    client = client_for(world.clinician)
    response = _submit(client, world, images=images)
    assert response.status_code == 201, response.content
    body = response.json()
    case = Case.objects.get()
    assert response["Location"] == f"/api/cases/{case.pk}/"
    assert body["id"] == case.pk and body["reference"] == case.reference
    assert body["status"] == "submitted" and body["priority"] == "urgent"
    assert body["clinical_notes"] == "Fever."
    assert body["patient"]["id"] == world.patient.pk and body["patient"]["mrn"] == "MRN-1"
    assert body["site"] == {"id": world.site.pk, "name": world.site.name, "kind": "referring"}
    assert body["laboratory"]["id"] == world.lab.pk  # the site's only laboratory
    assert body["submitted_by"] == {"id": world.clinician.pk, "username": "clara_clinician", "name": "Clara Tester"}
    assert body["diagnoses"] == [] and body["current_diagnosis"] is None and body["signed_by"] is None

    smears = body["smears"]
    assert [s["original_filename"] for s in smears] == ["left.png", "right.jpg"]
    assert [(s["width"], s["height"], s["format"]) for s in smears] == [(64, 48, "PNG"), (80, 60, "JPEG")]
    for smear, stored in zip(smears, case.smears.order_by("pk")):
        assert smear["id"] == stored.pk and smear["sha256"] == stored.sha256 and len(smear["sha256"]) == 64
        assert smear["image_url"] == f"http://testserver/api/smears/{stored.pk}/image/"
        image = client.get(smear["image_url"])
        assert image.status_code == 200 and image["X-Content-Type-Options"] == "nosniff"
        assert b"".join(image.streaming_content) == stored.image.open("rb").read()


def test_a_bad_file_among_good_ones_creates_nothing_and_names_each_bad_file(world, client_for):
    images = [
        smear_upload("good.png"),
        SimpleUploadedFile("notes.txt", b"just some text", content_type="image/png"),
        SimpleUploadedFile("empty.png", b"", content_type="image/png"),
    ]
    response = _submit(client_for(world.clinician), world, images=images)
    error = assert_error(response, 400, "upload_rejected")
    assert set(error["details"]) == {"notes.txt", "empty.png"}
    assert "not an image" in error["details"]["notes.txt"] and "empty" in error["details"]["empty.png"]
    assert not Case.objects.exists() and not Smear.objects.exists()
    assert not AuditEvent.objects.filter(action="submitted").exists()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"images": []}, "images"),  # missing files
        ({"images": "not-a-file"}, "images"),
        ({"patient": "abc"}, "patient"),
        ({"patient": ""}, "patient"),
        ({"patient": 999999}, "patient"),
        ({"patient": 10**30}, "patient"),
        ({"priority": "whenever"}, "priority"),
        ({"laboratory": 999999}, "laboratory"),
        ({"laboratory": "x"}, "laboratory"),
        ({"model_version": 999999}, "model_version"),
        ({"status": "signed"}, "status"),  # not a field a client sets
    ],
)
def test_malformed_submission_is_a_400_naming_the_field(world, client_for, overrides, field):
    payload = {"patient": world.patient.pk, "images": [smear_upload()]}
    payload.update(overrides)
    if payload["images"] == []:
        del payload["images"]
    response = client_for(world.clinician).post("/api/cases/", payload, format="multipart")
    error = assert_error(response, 400, "invalid")
    assert field in error["details"], error
    assert field in error["message"]
    assert not Case.objects.exists()


def test_another_organisations_patient_or_laboratory_looks_like_no_such_id(world, client_for):
    from cases.models import Patient

    theirs = Patient.objects.create(
        organisation=world.other_site,
        mrn="T-1",
        given_name="T",
        family_name="T",
        sex="U",
        date_of_birth="2010-01-01",
        created_by=world.outsider,
    )
    client = client_for(world.clinician)
    invisible = assert_error(_submit(client, world, patient=theirs.pk), 400)["details"]["patient"]
    missing = assert_error(_submit(client, world, patient=theirs.pk + 1000), 400)["details"]["patient"]
    assert invisible == [m.replace(str(theirs.pk + 1000), str(theirs.pk)) for m in missing]
    # A laboratory the site does not refer to.
    assert "laboratory" in assert_error(_submit(client, world, laboratory=world.other_lab.pk), 400)["details"]
    assert not Case.objects.exists()


def test_choosing_the_laboratory_when_the_site_refers_to_several(world, client_for):
    second = Organisation.objects.create(name="Second Lab", kind="reading")
    ReferralLink.objects.create(site=world.site, laboratory=second)
    client = client_for(world.clinician)
    error = assert_error(_submit(client, world), 400, "error")
    assert "laboratory" in error["details"]
    response = _submit(client, world, laboratory=second.pk)
    assert response.status_code == 201 and response.json()["laboratory"]["name"] == "Second Lab"


def test_requesting_a_model_version(world, client_for):
    version = ModelVersion.objects.create(name="m-1", architecture="mobilenetv2", file_path="m.keras", sha256="0" * 64)
    response = _submit(client_for(world.clinician), world, model_version=version.pk)
    assert response.status_code == 201 and response.json()["model_version"] == version.pk
    assert Case.objects.get().requested_model_version == version


def test_detail_shows_diagnosis_history_and_is_audited(world, case, client_for):
    client_for(world.pathologist).post(
        f"/api/cases/{case.pk}/sign/",
        {"password": DEMO_PASSWORD, "diagnosis": "pre_b", "comment": "Blasts."},
        format="json",
    )
    client_for(world.pathologist2).post(
        f"/api/cases/{case.pk}/amend/",
        {"password": DEMO_PASSWORD, "diagnosis": "pro_b", "reason": "Flow cytometry."},
        format="json",
    )
    body = client_for(world.clinician).get(f"/api/cases/{case.pk}/").json()
    assert body["status"] == "amended"
    assert body["signed_by"]["username"] == "paula_pathologist" and body["signed_at"]
    signature, amendment = body["diagnoses"]
    assert (signature["kind"], signature["diagnosis"], signature["comment"]) == ("signature", "pre_b", "Blasts.")
    assert signature["diagnosis_label"] == "Pre-B ALL"
    assert (amendment["kind"], amendment["diagnosis"], amendment["reason"]) == ("amendment", "pro_b", "Flow cytometry.")
    assert amendment["supersedes"] == signature["id"] and amendment["signed_by"]["username"] == "peter_pathologist"
    assert body["current_diagnosis"] == amendment
    assert AuditEvent.objects.filter(action="viewed", case=case, actor=world.clinician).exists()


def test_list_filters(world, client_for):
    routine = world.submit_case(priority="routine")
    urgent = world.submit_case(priority="urgent")
    other_patient = world.new_patient()
    theirs = world.submit_case(patient=other_patient)
    client_for(world.pathologist).post(
        f"/api/cases/{routine.pk}/sign/", {"password": DEMO_PASSWORD, "diagnosis": "benign"}, format="json"
    )
    client = client_for(world.clinician)

    def ids(**params):
        response = client.get("/api/cases/", params)
        assert response.status_code == 200
        return [c["id"] for c in response.json()["results"]]

    assert ids() == [theirs.pk, urgent.pk, routine.pk]  # newest first
    assert ids(status="signed") == [routine.pk]
    assert ids(priority="urgent") == [urgent.pk]
    assert ids(status="submitted", priority="routine") == [theirs.pk]
    assert ids(patient=other_patient.pk) == [theirs.pk]
    assert ids(status="") == ids()
    listed = client.get("/api/cases/").json()["results"][2]
    assert listed["current_diagnosis"]["diagnosis"] == "benign" and "smears" not in listed


@pytest.mark.parametrize(
    "params, field", [({"status": "done"}, "status"), ({"priority": 1}, "priority"), ({"patient": "x"}, "patient")]
)
def test_malformed_filters_are_a_400(world, client_for, params, field):
    error = assert_error(client_for(world.clinician).get("/api/cases/", params), 400, "invalid")
    assert set(error["details"]) == {field}


def test_lists_use_a_constant_number_of_queries(world, client_for, django_assert_max_num_queries):
    for n in range(6):
        case = world.submit_case(priority="urgent" if n % 2 else "routine")
        if n % 3 == 0:
            client_for(world.pathologist).post(
                f"/api/cases/{case.pk}/sign/", {"password": DEMO_PASSWORD, "diagnosis": "benign"}, format="json"
            )
    with django_assert_max_num_queries(4):  # count, page, diagnoses (+ savepoint slack)
        assert len(client_for(world.clinician).get("/api/cases/").json()["results"]) == 6
    with django_assert_max_num_queries(4):
        assert len(client_for(world.pathologist).get("/api/review-queue/").json()["results"]) == 4
    with django_assert_max_num_queries(4):
        assert client_for(world.lab_admin).get("/api/audit-events/").status_code == 200


@pytest.mark.parametrize(
    "name, path",
    [
        ("clinician", "/api/patients/"),
        ("clinician", "/api/cases/"),
        ("pathologist", "/api/cases/{case}/"),
        ("pathologist", "/api/cases/{case}/sign/"),
        ("pathologist", "/api/review-queue/"),
        ("lab_admin", "/api/users/"),
        ("lab_admin", "/api/audit-events/"),
        ("lab_admin", "/api/me/"),
    ],
)
def test_options_and_head_work(world, case, client_for, name, path):
    client = client_for(getattr(world, name))
    url = path.format(case=case.pk)
    assert client.options(url).status_code == 200
    if not url.endswith("/sign/"):
        assert client.head(url).status_code == 200


@pytest.mark.parametrize("prefer", ["return=minimal", "respond-async, return=minimal", "RETURN=minimal; x=1"])
def test_submit_with_prefer_return_minimal_answers_with_the_ids_only(world, client_for, prefer):
    client = client_for(world.clinician)
    response = client.post(
        "/api/cases/", {"patient": world.patient.pk, "images": [smear_upload()]}, format="multipart", HTTP_PREFER=prefer
    )
    assert response.status_code == 201, response.content
    case = Case.objects.get()
    assert response["Preference-Applied"] == "return=minimal"
    assert response["Location"] == f"/api/cases/{case.pk}/"
    assert response.json() == {
        "id": case.pk,
        "reference": case.reference,
        "status": "submitted",
        "url": f"http://testserver/api/cases/{case.pk}/",
    }
    assert case.smears.count() == 1  # the same submission, only a shorter answer


def test_other_preferences_get_the_whole_case(world, client_for):
    payload = {"patient": world.patient.pk, "images": [smear_upload()]}
    response = client_for(world.clinician).post(
        "/api/cases/", payload, format="multipart", HTTP_PREFER="return=representation"
    )
    assert response.status_code == 201 and "Preference-Applied" not in response
    assert response.json()["smears"][0]["original_filename"] == "smear.png"

"""The signed PDF report: its text (extracted with pypdf), its versions, who may download it."""

import hashlib

import pytest
from django.urls import reverse

from tests.reports.conftest import FLAG_TEXT, MODEL_NAME, amend, pdf_text, sign

pytestmark = pytest.mark.django_db


def api_pdf(client, case, **params):
    return client.get(reverse("api-case-report-pdf", args=[case.pk]), params)


def test_signed_report_says_who_what_and_when(client, world, signed_case):
    client.force_login(world.clinician)
    response = api_pdf(client, signed_case)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'inline; filename="{signed_case.reference}-report-v1.pdf"'
    assert "no-store" in response["Cache-Control"]
    data = response.content
    assert data.startswith(b"%PDF-")
    text, reader = pdf_text(data)
    flat = " ".join(text.split())

    review = signed_case.current_diagnosis
    expected = [
        "St Mary's Clinic",  # referring site
        "Central Haematology Laboratory",  # reading laboratory
        "Alex Patient",
        "MRN-1",
        "2012-05-17",
        signed_case.reference,
        "Urgent",
        "Lymphocytosis, suspected ALL.",
        "Pathologist's diagnosis",
        "Pre-B ALL",
        "Blasts with fine chromatin; typical of Pre-B ALL.",
        "Paula Tester",
        "Electronic signature (password re-entered)",
        f"{review.signed_at:%Y-%m-%d %H:%M}",  # TIME_ZONE is UTC in tests
        MODEL_NAME,
        "70.0 %",  # the mean of 80 % and 60 %
        "Early Pre-B ALL",
        FLAG_TEXT,
        "Not a blood smear",
        "mostly uniform background",
        "decision support",
        "left-field.png",
        "right-field.png",
    ]
    missing = [item for item in expected if item not in flat]
    assert missing == [], flat
    assert "AMENDED" not in flat
    for code in ("early_pre_b", "pre_b", "pro_b", "not_a_smear"):
        assert code not in flat  # human labels only
    # The specimen thumbnails are in the PDF as images (the unreadable-free three of them).
    assert sum(len(page.images) for page in reader.pages) == 3
    assert response["X-Report-SHA256"] == hashlib.sha256(data).hexdigest()


def test_pathologist_downloads_it_too_and_portal_links_it(client, world, signed_case):
    client.force_login(world.pathologist)
    assert api_pdf(client, signed_case).status_code == 200
    portal = client.get(reverse("case-report-pdf", args=[signed_case.pk]))
    assert portal.status_code == 200 and portal["Content-Type"] == "application/pdf"

    client.force_login(world.clinician)
    page = client.get(reverse("case-detail", args=[signed_case.pk])).content.decode()
    assert reverse("case-report-pdf", args=[signed_case.pk]) in page
    assert reverse("api-case-fhir", args=[signed_case.pk]) in page
    assert 'href="/static/css/print.css" media="print"' in page


def test_amended_report_says_what_changed_and_keeps_the_first(client, world, signed_case):
    from reports.models import ReportVersion

    client.force_login(world.clinician)
    first = api_pdf(client, signed_case).content

    amend(signed_case, world.pathologist2)
    latest = api_pdf(client, signed_case)
    assert latest.status_code == 200
    assert latest["X-Report-Version"] == "2"
    text, _ = pdf_text(latest.content)
    flat = " ".join(text.split())
    for item in (
        "AMENDED",
        "Diagnosis changed from Pre-B ALL to Pro-B ALL",
        "Flow cytometry: CD10 negative, so Pro-B rather than Pre-B.",
        "Peter Tester",  # the amending pathologist signs version 2
        "Versions of this report",
    ):
        assert item in flat, item

    # Version 1 is still there, byte for byte as first issued.
    again = api_pdf(client, signed_case, version=1)
    assert again.status_code == 200
    assert again.content == first
    assert "AMENDED" not in " ".join(pdf_text(again.content)[0].split())
    versions = list(ReportVersion.objects.filter(case=signed_case).order_by("number"))
    assert [v.number for v in versions] == [1, 2]
    assert versions[0].sha256 == hashlib.sha256(first).hexdigest()

    page = client.get(reverse("case-detail", args=[signed_case.pk])).content.decode()
    assert f"{reverse('case-report-pdf', args=[signed_case.pk])}?version=1" in page


def test_report_is_issued_when_the_signature_commits(world, analysed_case, django_capture_on_commit_callbacks):
    from reports.models import ReportVersion

    with django_capture_on_commit_callbacks(execute=True):
        review = sign(analysed_case, world.pathologist)
    version = ReportVersion.objects.get(review=review)
    assert version.number == 1 and version.size_bytes > 1000
    assert version.model_version.name == MODEL_NAME
    with django_capture_on_commit_callbacks(execute=True):
        amendment = amend(analysed_case, world.pathologist)
    assert ReportVersion.objects.get(review=amendment).number == 2


@pytest.mark.parametrize("who", ["outsider", "other_pathologist"])
def test_another_organisation_gets_404(client, world, signed_case, who):
    client.force_login(getattr(world, who))
    assert api_pdf(client, signed_case).status_code == 404
    assert client.get(reverse("api-case-fhir", args=[signed_case.pk])).status_code == 404
    assert client.get(reverse("case-report-pdf", args=[signed_case.pk])).status_code == 404


def test_lab_admin_and_anonymous_are_refused(client, world, signed_case):
    assert api_pdf(client, signed_case).status_code == 401
    client.force_login(world.lab_admin)
    assert api_pdf(client, signed_case).status_code == 403


def test_unsigned_case_has_no_report_yet(client, world, analysed_case):
    client.force_login(world.clinician)
    response = api_pdf(client, analysed_case)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "not_signed"
    assert "not signed yet" in error["message"]
    assert client.get(reverse("api-case-fhir", args=[analysed_case.pk])).status_code == 409
    portal = client.get(reverse("case-report-pdf", args=[analysed_case.pk]), follow=True)
    assert portal.status_code == 200
    assert "not signed yet" in portal.content.decode()


def test_bad_or_missing_version(client, world, signed_case):
    client.force_login(world.clinician)
    assert api_pdf(client, signed_case, version=2).status_code == 404
    assert api_pdf(client, signed_case, version="two").status_code == 400
    assert api_pdf(client, signed_case, version=0).status_code == 404
    assert client.get(reverse("case-report-pdf", args=[signed_case.pk]), {"version": 5}).status_code == 404


def test_case_without_ai_result_still_reports(client, world):
    case = world.submit_case()
    sign(case, world.pathologist, diagnosis="non_diagnostic", comment="Too few cells.")
    client.force_login(world.clinician)
    text, _ = pdf_text(api_pdf(client, case).content)
    flat = " ".join(text.split())
    assert "No AI result was available" in flat
    assert "Non-diagnostic" in flat


def test_amendment_that_keeps_the_diagnosis_says_so(client, world, signed_case):
    amend(signed_case, world.pathologist, diagnosis="pre_b", reason="Comment corrected: typo in the cell count.")
    client.force_login(world.clinician)
    flat = " ".join(pdf_text(api_pdf(client, signed_case).content)[0].split())
    assert "AMENDED" in flat
    assert "Diagnosis unchanged (Pre-B ALL)" in flat
    assert "Comment corrected: typo in the cell count." in flat
    assert world.clinician.notifications.order_by("-pk").first().title == f"{signed_case.reference} amended: Pre-B ALL"


def test_clients_may_ask_for_pdf_or_fhir_json(client, world, signed_case):
    client.force_login(world.clinician)
    url = reverse("api-case-report-pdf", args=[signed_case.pk])
    response = client.get(url, HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")
    refused = client.get(reverse("api-case-report-pdf", args=[world.submit_case().pk]), HTTP_ACCEPT="application/pdf")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_signed"
    fhir = client.get(reverse("api-case-fhir", args=[signed_case.pk]), HTTP_ACCEPT="application/fhir+json")
    assert fhir.status_code == 200 and fhir["Content-Type"] == "application/fhir+json"
    assert fhir.json()["resourceType"] == "Bundle"


def test_names_in_other_scripts_and_markup_characters_print_as_written(client, world):
    patient = world.new_patient(mrn="MRN-Ω", given_name="Zoë", family_name="Пётрова-Ψάρη")
    case = world.submit_case(patient=patient)
    sign(case, world.pathologist, diagnosis="benign", comment="Reactive <b>lymphocytes</b> & no blasts.")
    client.force_login(world.clinician)
    flat = " ".join(pdf_text(api_pdf(client, case).content)[0].split())
    assert "Zoë Пётрова-Ψάρη" in flat
    assert "MRN-Ω" in flat
    assert "Reactive <b>lymphocytes</b> & no blasts." in flat


def test_a_rejected_images_verdict_is_given_once(client, world, signed_case):
    client.force_login(world.clinician)
    flat = " ".join(pdf_text(api_pdf(client, signed_case).content)[0].split())
    assert flat.count("Not a blood smear: mostly uniform background") == 1

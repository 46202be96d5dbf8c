"""The review workspace without a browser: queue filters, search, counts, AI columns, taking a
case, the next case after signing, the live case header, and what clinicians see of the AI."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from cases.models import Case
from inference import flagging, services
from inference.models import AnalysisJob, Prediction
from tests.conftest import DEMO_PASSWORD, smear_upload
from training.models import ModelVersion

CLASSES = ["benign", "early_pre_b", "pre_b", "pro_b"]


@pytest.fixture
def version(db):
    return ModelVersion.objects.create(
        name="ws-test", architecture="mobilenetv2", file_path="x.keras", sha256="1" * 64, class_names=CLASSES
    )


def analyse(case, version, results):
    """Record one finished job per image: each result is a probabilities dict, "failed", or
    ("flags", probabilities, [flags]) / ("not_a_smear", reasons). Failures go through
    services.job_fail and flagged predictions refresh the case's AI flag, as in the worker."""
    for smear, result in zip(case.smears.order_by("pk"), results):
        job = AnalysisJob.objects.create(smear=smear, model_version=version, status="running")
        if result == "failed":
            services.job_fail(job.pk, "The image could not be read.")
            continue
        flags, is_smear, reasons = [], True, []
        if isinstance(result, tuple) and result[0] == "flags":
            _, result, flags = result
        elif isinstance(result, tuple) and result[0] == "not_a_smear":
            is_smear, reasons, result = False, result[1], {}
        label = max(result, key=result.get) if result else "not_a_smear"
        prediction = Prediction.objects.create(
            smear=smear,
            model_version=version,
            job=job,
            label=label,
            probabilities=result,
            is_smear=is_smear,
            smear_reasons=reasons,
            flags=flags,
            inference_ms=42,
            queue_wait_ms=1500,
        )
        AnalysisJob.objects.filter(pk=job.pk).update(status="done", finished_at=timezone.now())
        if flagging.prediction_is_flagged(prediction):
            flagging.case_flag_refresh(case.pk)
    Case.objects.filter(pk=case.pk).update(status="awaiting_review")


def rows(response):
    return [case.reference for case in response.context["page_obj"]]


@pytest.fixture
def queue(world, version):
    """Five waiting cases of world.lab, oldest first, one of another laboratory, one signed."""
    from accounts.models import Organisation, ReferralLink

    other_site = Organisation.objects.create(name="Lakeside Clinic", kind="referring")
    ReferralLink.objects.create(site=other_site, laboratory=world.lab)
    now = timezone.now()
    made = {}
    made["plain"] = world.submit_case()
    made["urgent"] = world.submit_case(priority="urgent", patient=world.new_patient(mrn="MRN-URG"))
    made["flagged"] = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png")])
    made["failed"] = world.submit_case(files=[smear_upload("c.png"), smear_upload("d.png")])
    made["not_smear"] = world.submit_case()
    for age, key in enumerate(["plain", "urgent", "flagged", "failed", "not_smear"]):
        Case.objects.filter(pk=made[key].pk).update(created_at=now - timedelta(days=10 - age))
    analyse(made["plain"], version, [{"benign": 0.05, "early_pre_b": 0.85, "pre_b": 0.05, "pro_b": 0.05}])
    analyse(
        made["flagged"],
        version,
        [
            (
                "flags",
                {"benign": 0.1, "early_pre_b": 0.1, "pre_b": 0.7, "pro_b": 0.1},
                ["outside validated conditions"],
            ),
            {"benign": 0.1, "early_pre_b": 0.1, "pre_b": 0.7, "pro_b": 0.1},
        ],
    )
    analyse(made["failed"], version, [{"benign": 0.9, "early_pre_b": 0.04, "pre_b": 0.03, "pro_b": 0.03}, "failed"])
    analyse(made["not_smear"], version, [("not_a_smear", ["too little colour"])])
    # Lakeside's case: another referring site of the same laboratory.
    from cases.models import Patient

    lake_clinician = type(world.clinician).objects.create_user(
        "lake_clinician", password=DEMO_PASSWORD, organisation=other_site, role="clinician"
    )
    lake_patient = Patient.objects.create(
        organisation=other_site,
        mrn="LAKE-1",
        given_name="Lee",
        family_name="Lake",
        sex="M",
        date_of_birth="2011-01-01",
        created_by=lake_clinician,
    )
    from cases.services import case_submit

    made["lakeside"] = case_submit(user=lake_clinician, patient=lake_patient, files=[smear_upload()])
    made["lakeside_site"] = other_site
    return made


def test_queue_shows_the_ai_columns_with_human_labels(login, world, queue):
    response = login(world.pathologist).get(reverse("review-queue"))
    assert response.status_code == 200
    page = response.content.decode()
    row = re.search(rf'data-case="{queue["plain"].reference}".*?</tr>', page, re.S).group(0)
    assert "Early Pre-B ALL" in row and "early_pre_b" not in row
    assert "85%" in row  # top probability
    flagged = re.search(rf'data-case="{queue["flagged"].reference}".*?</tr>', page, re.S).group(0)
    assert "outside validated conditions" in flagged and "Pre-B ALL" in flagged
    failed = re.search(rf'data-case="{queue["failed"].reference}".*?</tr>', page, re.S).group(0)
    assert "1 analysis failed" in failed
    not_smear = re.search(rf'data-case="{queue["not_smear"].reference}".*?</tr>', page, re.S).group(0)
    assert "1 not a blood smear" in not_smear and "No subtype" in not_smear
    assert re.search(r"<td[^>]*>\s*10 days", row)  # waiting time
    assert response.context["counts"] == {"waiting": 6, "urgent": 1, "mine": 0}
    # urgent first, then oldest first
    assert rows(response)[0] == queue["urgent"].reference


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"urgent": "on"}, ["urgent"]),
        ({"flagged": "on"}, ["flagged", "failed", "not_smear"]),
        ({"q": "MRN-URG"}, ["urgent"]),
        ({"q": "__ref__flagged"}, ["flagged"]),
        ({"site": "__lakeside__"}, ["lakeside"]),
        ({"date_from": "__days_ago_7__"}, ["failed", "not_smear", "lakeside"]),
        ({"date_to": "__days_ago_8__"}, ["urgent", "plain", "flagged"]),
    ],
)
def test_queue_filters(login, world, queue, params, expected):
    today = timezone.localdate()
    values = {}
    for key, value in params.items():
        if value.startswith("__ref__"):
            value = queue[value[7:]].reference
        elif value == "__lakeside__":
            value = str(queue["lakeside_site"].pk)
        elif value.startswith("__days_ago_"):
            value = (today - timedelta(days=int(value.strip("_").split("_")[-1]))).isoformat()
        values[key] = value
    response = login(world.pathologist).get(reverse("review-queue"), values)
    assert response.status_code == 200
    assert rows(response) == [queue[name].reference for name in expected]


def test_the_flagged_filter_reads_the_cases_stored_flag(world, queue):
    from workspace.forms import QueueFilterForm
    from workspace.queue import filtered_queue

    form = QueueFilterForm({"flagged": "on"}, user=world.pathologist)
    sql = str(filtered_queue(world.pathologist, form).query)
    assert '"ai_flagged"' in sql and "inference_" not in sql  # the partial index, no walk over the AI's rows
    Case.objects.filter(pk=queue["plain"].pk).update(ai_flagged=True)
    assert queue["plain"] in filtered_queue(world.pathologist, form)


def test_assigned_to_me_filter_and_take_case(login, world, queue):
    client = login(world.pathologist)
    url = reverse("case-assign", args=[queue["plain"].pk])
    response = client.post(url, {"next": "/review/?urgent=on"})
    assert response.status_code == 302 and response["Location"] == "/review/?urgent=on"
    case = Case.objects.get(pk=queue["plain"].pk)
    assert case.assigned_to == world.pathologist and case.assigned_at is not None
    event = AuditEvent.objects.filter(case=case, action="changed").latest("pk")
    assert event.actor == world.pathologist and event.detail["assigned_to"] == world.pathologist.username
    response = client.get(reverse("review-queue"), {"mine": "on"})
    assert rows(response) == [case.reference]
    assert response.context["counts"]["mine"] == 1
    # another pathologist does not see it as theirs
    assert rows(login(world.pathologist2).get(reverse("review-queue"), {"mine": "on"})) == []
    # an off-site redirect target is ignored
    client = login(world.pathologist)
    response = client.post(url, {"action": "release", "next": "https://evil.example/"})
    assert response["Location"] == reverse("case-review", args=[case.pk])
    assert Case.objects.get(pk=case.pk).assigned_to is None
    response = client.post(url, {"next": "0"})  # not a path: ignored, not looked up as a URL name
    assert response.status_code == 302 and response["Location"] == reverse("case-review", args=[case.pk])


def test_taking_a_case_is_refused_where_it_must_be(login, world, queue, signed_case):
    url = reverse("case-assign", args=[queue["plain"].pk])
    assert login(world.other_pathologist).post(url).status_code == 404  # another laboratory
    assert login(world.clinician).post(url).status_code == 403
    assert login(world.pathologist).get(url).status_code == 405
    response = login(world.pathologist).post(reverse("case-assign", args=[signed_case.pk]), follow=True)
    assert "cannot be assigned" in response.content.decode()
    assert Case.objects.get(pk=signed_case.pk).assigned_to is None


def test_bad_filter_input_is_a_clear_answer_not_an_error(login, world, queue):
    client = login(world.pathologist)
    response = client.get(reverse("review-queue"), {"date_from": "2026-02-01", "date_to": "2026-01-01"})
    assert response.status_code == 200 and "before its start" in response.content.decode()
    for params in ({"date_from": "yesterday"}, {"site": "999999"}, {"site": "x"}, {"q": "x" * 500}):
        assert client.get(reverse("review-queue"), params).status_code == 200
    assert login(world.clinician).get(reverse("review-queue")).status_code == 403
    assert login(world.lab_admin).get(reverse("review-queue")).status_code == 403


def test_background_refresh_returns_the_region_and_stops_when_signed_out(client, login, world, queue):
    response = login(world.pathologist).get(reverse("review-queue"), {"urgent": "on"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200 and page.lstrip().startswith("{#") is False
    assert 'id="queue-region"' in page and "<html" not in page
    assert 'hx-get="/review/?urgent=on"' in page  # the refresh keeps the filters
    assert "no-cache" in response["Cache-Control"]
    client.logout()
    response = client.get(reverse("review-queue"), HTTP_HX_REQUEST="true")
    assert response.status_code == 286 and "Sign in again" in response.content.decode()
    assert client.get(reverse("review-queue"))["Location"].startswith(reverse("login"))


def test_after_signing_the_pathologist_lands_on_the_next_case(login, world, queue):
    from cases.services import case_assign

    # The head of the queue is taken by someone else: it is skipped.
    case_assign(user=world.pathologist2, case=queue["urgent"], assignee=world.pathologist2)
    client = login(world.pathologist)
    page = client.get(reverse("case-review", args=[queue["flagged"].pk]))
    assert page.context["next_case"] == queue["plain"]
    assert "data-next-case" in page.content.decode()
    response = client.post(
        reverse("case-review", args=[queue["flagged"].pk]),
        {"action": "sign", "sign-diagnosis": "pre_b", "sign-password": DEMO_PASSWORD},
    )
    assert response["Location"] == reverse("case-review", args=[queue["plain"].pk])
    landed = client.get(response["Location"]).content.decode()
    assert f"Case {queue['flagged'].reference} signed." in landed and f"Next: {queue['plain'].reference}" in landed


def test_review_page_has_the_workspace_controls(login, world, queue):
    page = login(world.pathologist).get(reverse("case-review", args=[queue["flagged"].pk])).content.decode()
    assert 'data-testid="shortcut-help"' in page and "<kbd>a</kbd>" in page and "<kbd>j</kbd>" in page
    assert "data-accept-ai" in page and 'data-ai-label="pre_b"' in page
    assert page.count("data-zoom-viewer") == 2 and "data-heatmap-toggle" in page
    assert 'data-testid="take-case"' in page
    assert "js/review.js" in page
    assert re.search(r"<[^>]+\sstyle=", page) is None  # no inline style attribute (CSP)
    assert "<script>" not in page


def test_ai_panel_labels_timings_and_status(login, world, queue, version):
    from cases.services import case_sign

    case = queue["failed"]
    pathologist_page = login(world.pathologist).get(reverse("case-review", args=[case.pk])).content.decode()
    assert 'data-testid="ai-timings"' in pathologist_page and "inference 42 ms" in pathologist_page
    clinician_page = login(world.clinician).get(reverse("case-detail", args=[case.pk])).content.decode()
    assert "ai-timings" not in clinician_page and "42 ms" not in clinician_page and "1500 ms" not in clinician_page
    assert "Preliminary — not reviewed by a pathologist" in clinician_page
    # The job badge says the status once ("done", not "done done").
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", clinician_page))
    assert "done done" not in text and "done" in text
    case_sign(signature_method="password", user=world.pathologist, case=case, diagnosis="benign")
    clinician_page = login(world.clinician).get(reverse("case-detail", args=[case.pk])).content.decode()
    assert "Preliminary — not reviewed" not in clinician_page and 'data-testid="ai-reviewed"' in clinician_page


def test_disagreeing_images_are_named_in_human_labels(login, world, version):
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png")])
    analyse(
        case,
        version,
        [
            {"benign": 0.05, "early_pre_b": 0.8, "pre_b": 0.1, "pro_b": 0.05},
            {"benign": 0.05, "early_pre_b": 0.1, "pre_b": 0.8, "pro_b": 0.05},
        ],
    )
    page = login(world.pathologist).get(reverse("case-review", args=[case.pk])).content.decode()
    assert "The images disagree: Early Pre-B ALL, Pre-B ALL." in page
    assert "early_pre_b" not in re.sub(r'(value|data-ai-label)="[^"]*"', "", page)
    queue_page = login(world.pathologist).get(reverse("review-queue")).content.decode()
    assert "images disagree" in queue_page


def test_case_header_updates_live_until_final(client, login, world, case):
    url = reverse("case-status", args=[case.pk])
    response = login(world.clinician).get(url)
    page = response.content.decode()
    assert response.status_code == 200 and 'id="case-status-badges"' in page and "hx-get" in page
    assert 'id="case-summary-status" hx-swap-oob="true"' in page and "Submitted" in page
    Case.objects.filter(pk=case.pk).update(status="awaiting_review")
    assert "Awaiting review" in login(world.clinician).get(url).content.decode()
    detail = login(world.clinician).get(reverse("case-detail", args=[case.pk])).content.decode()
    assert f'hx-get="{url}"' in detail and 'id="case-summary-status"' in detail
    from cases.services import case_sign

    case_sign(signature_method="password", user=world.pathologist, case=case, diagnosis="pre_b")
    response = login(world.clinician).get(url)
    assert response.status_code == 286 and "Signed" in response.content.decode()  # the last swap, then no polling
    assert login(world.outsider).get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 286


@pytest.mark.parametrize(
    "seconds, text", [(59, "0 min"), (25 * 60, "25 min"), (5 * 3600 + 600, "5 h 10 min"), (3 * 86400 + 5, "3 days")]
)
def test_waiting_text(seconds, text):
    from workspace.queue import waiting_text

    assert waiting_text(seconds) == text


def test_cases_go_only_to_pathologists_of_the_reading_laboratory(world, case):
    from cases.services import case_assign
    from core.errors import DomainError, NotAllowed

    for assignee in (world.clinician, world.other_pathologist, world.lab_admin):
        with pytest.raises(DomainError):
            case_assign(user=world.pathologist, case=case, assignee=assignee)
    with pytest.raises(NotAllowed):
        case_assign(user=world.other_pathologist, case=case, assignee=world.other_pathologist)
    before = AuditEvent.objects.count()
    case_assign(user=world.pathologist, case=case, assignee=world.pathologist2)  # a colleague
    case_assign(user=world.pathologist, case=case, assignee=world.pathologist2)  # no change: no event
    assert Case.objects.get(pk=case.pk).assigned_to == world.pathologist2
    assert AuditEvent.objects.count() == before + 1

"""Access checks and content of the analysis endpoints, the heatmap, the panel and the API."""

import re

import pytest
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse

from inference.models import AnalysisJob, Prediction
from inference.tasks import analyse_smear
from tests.conftest import smear_upload
from tests.inference.conftest import register_version


@pytest.fixture
def analysed(world, model_version):
    """A case with two smears: one analysed, one failed."""
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png", colour=(20, 200, 20))])
    done, failed = AnalysisJob.objects.filter(smear__case=case).order_by("pk")
    assert analyse_smear(done.pk) == "done"
    failed.smear.image.storage.delete(failed.smear.image.name)
    assert analyse_smear(failed.pk) == "failed"
    case.refresh_from_db()
    return case


def json_url(case):
    return reverse("api-case-analysis", args=[case.pk])


def heatmap_url(case):
    return reverse("inference-heatmap", args=[Prediction.objects.get(smear__case=case).pk])


def as_user(client, user):
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.parametrize(
    "who, expected",
    [
        ("clinician", 200),
        ("colleague", 200),
        ("pathologist", 200),
        ("pathologist2", 200),
        ("lab_admin", 403),
        ("site_admin", 403),  # roles that never see cases
        ("outsider", 404),  # clinician of another organisation
        ("other_pathologist", 404),  # pathologist of a laboratory the site does not refer to
        (None, 401),  # anonymous: JSON for the polling script, not a login page
    ],
)
def test_json_endpoint_access(client, world, analysed, who, expected):
    response = as_user(client, getattr(world, who) if who else None).get(json_url(analysed))
    assert response.status_code == expected
    assert response["Content-Type"].startswith("application/json")
    if expected == 200:
        assert response.json()["case"]["id"] == analysed.pk
        assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
    else:
        assert "error" in response.json() and "smears" not in response.json()


@pytest.mark.parametrize(
    "who, expected",
    [
        ("clinician", 200),
        ("pathologist", 200),
        ("lab_admin", 403),
        ("site_admin", 403),
        ("outsider", 404),
        ("other_pathologist", 404),
        (None, 302),
    ],
)
def test_heatmap_access(client, world, analysed, who, expected):
    response = as_user(client, getattr(world, who) if who else None).get(heatmap_url(analysed))
    assert response.status_code == expected
    if expected == 200:
        assert response["Content-Type"] == "image/png"
        assert b"".join(response.streaming_content).startswith(b"\x89PNG")
        assert "private" in response["Cache-Control"]
    if expected == 302:
        assert "/login" in response["Location"]


def test_unknown_ids_are_404(client, world, analysed):
    client.force_login(world.pathologist)
    assert client.get(reverse("api-case-analysis", args=[999999])).status_code == 404
    assert client.get(reverse("inference-heatmap", args=[999999])).status_code == 404


def test_json_content_for_a_pathologist_and_a_clinician(client, world, analysed, model_version):
    client.force_login(world.pathologist)
    data = client.get(json_url(analysed)).json()
    assert data["state"] == "done" and data["pending"] is False and data["poll_interval_ms"] is None
    assert data["model_version"]["name"] == model_version.name
    done, failed = data["smears"]
    assert done["job"]["status"] == "done" and done["job"]["status_text"] == "done"
    assert done["prediction"]["label"] in {"benign", "early_pre_b", "pre_b", "pro_b"}
    assert [row["name"] for row in done["prediction"]["probabilities"]] == ["benign", "early_pre_b", "pre_b", "pro_b"]
    assert done["prediction"]["heatmap_url"] == heatmap_url(analysed)
    assert done["image_url"]
    assert failed["job"]["status_text"].startswith("failed: The image file of this smear cannot be read")
    assert failed["job"]["retry_url"] == reverse("inference-job-retry", args=[failed["job"]["id"]])
    assert failed["prediction"] is None
    result = data["result"]
    assert result["label"] == done["prediction"]["label"]
    assert result["attention"] is True and any("could not be analysed" in r for r in result["reasons"])
    assert data["permissions"] == {"can_retry": True, "can_rerun": True, "sees_timings": True}
    assert data["rerun"]["versions"][0]["name"] == model_version.name

    client.force_login(world.clinician)
    data = client.get(json_url(analysed)).json()
    assert data["permissions"] == {"can_retry": False, "can_rerun": False, "sees_timings": False}
    assert data["smears"][1]["job"]["retry_url"] is None and data["rerun"] is None
    # Operational timings are the laboratory's business, not the referring clinician's.
    done = data["smears"][0]["prediction"]
    assert done["queue_wait_ms"] is None and done["inference_ms"] is None


def test_pending_work_is_polled_and_queued_shows_waiting_time(client, world, model_version):
    case = world.submit_case()
    client.force_login(world.clinician)
    data = client.get(json_url(case)).json()
    assert data["state"] == "queued" and data["pending"] is True and data["poll_interval_ms"] == 3000
    assert data["smears"][0]["job"]["status_text"].startswith("queued (waiting ")


def test_waiting_for_a_model_is_shown(client, world):
    case = world.submit_case()
    client.force_login(world.pathologist)
    data = client.get(json_url(case)).json()
    assert data["state"] == "waiting_for_model" and data["state_label"] == "waiting for a model"
    response = client.get(reverse("inference-case-analysis", args=[case.pk]))
    assert response.status_code == 200
    assert "Waiting for a model" in response.content.decode()


@pytest.mark.parametrize(
    "who, expected",
    [
        ("pathologist", 202),
        ("lab_admin", 202),  # the laboratory's staff
        ("clinician", 403),  # sees the case, may not retry
        ("site_admin", 404),
        ("other_pathologist", 404),
        ("outsider", 404),
    ],
)
def test_retry_endpoint_access(client, world, analysed, published, who, expected, django_capture_on_commit_callbacks):
    job = AnalysisJob.objects.get(smear__case=analysed, status="failed")
    client.force_login(getattr(world, who))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("inference-job-retry", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == expected
    job.refresh_from_db()
    if expected == 202:
        assert job.status == "queued" and published.job_ids() == [job.pk]
    else:
        assert job.status == "failed" and published == []


def test_retry_without_script_redirects_and_anonymous_goes_to_login(client, world, analysed):
    job = AnalysisJob.objects.get(smear__case=analysed, status="failed")
    response = client.post(reverse("inference-job-retry", args=[job.pk]))
    assert response.status_code == 302 and "/login" in response["Location"]
    client.force_login(world.pathologist)
    response = client.post(reverse("inference-job-retry", args=[job.pk]))
    assert response.status_code == 302 and response["Location"] == analysed.get_absolute_url()
    # Retrying what is no longer failed is refused with a clear message, in the panel htmx swaps in.
    response = client.post(reverse("inference-job-retry", args=[job.pk]), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "data-inference-analysis" in html
    assert 'data-testid="ai-notice"' in html and "Only a failed analysis" in html


def test_rerun_endpoint(client, world, analysed, model_file, published, django_capture_on_commit_callbacks):
    path, sha256 = model_file
    other = register_version(path, sha256, name="second-version", active=False)
    url = reverse("inference-case-rerun", args=[analysed.pk])
    client.force_login(world.clinician)
    assert client.post(url, {"model_version": other.pk}, HTTP_HX_REQUEST="true").status_code == 403
    client.force_login(world.other_pathologist)
    assert client.post(url, {"model_version": other.pk}, HTTP_HX_REQUEST="true").status_code == 404
    client.force_login(world.pathologist)
    refused = client.post(url, {"model_version": "nope"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 200 and "Unknown model version." in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"model_version": other.pk}, HTTP_HX_REQUEST="true")
    assert response.status_code == 202
    html = response.content.decode()
    assert "Model second-version" in html and 'hx-trigger="every 3s"' in html  # queued: it polls
    assert len(published.job_ids()) == 2
    assert AnalysisJob.objects.filter(smear__case=analysed, model_version=other).count() == 2


def test_failed_jobs_page_for_lab_admins(client, world, analysed):
    client.force_login(world.lab_admin)
    response = client.get(reverse("inference-failed-jobs"))
    assert response.status_code == 200
    assert analysed.reference in response.content.decode()
    client.force_login(world.site_admin)  # lab admin of the referring site: no failed job of theirs
    assert analysed.reference not in client.get(reverse("inference-failed-jobs")).content.decode()
    client.force_login(world.clinician)
    assert client.get(reverse("inference-failed-jobs")).status_code == 403


@pytest.mark.parametrize(
    "who, expected",
    [
        ("clinician", 200),
        ("pathologist", 200),
        ("lab_admin", 403),
        ("site_admin", 403),
        ("outsider", 404),
        ("other_pathologist", 404),
        (None, 286),  # signed out: a page that says so, and htmx stops polling (no login page swapped in)
    ],
)
def test_panel_endpoint_access(client, world, analysed, who, expected):
    url = reverse("inference-case-analysis-panel", args=[analysed.pk])
    response = as_user(client, getattr(world, who) if who else None).get(url)
    assert response.status_code == expected
    html = response.content.decode()
    if expected == 200:
        assert "data-inference-analysis" in html
        assert 'data-testid="ai-case-label"' in html and "no-store" in response["Cache-Control"]
    if expected == 286:
        assert "session has ended" in html and "hx-get" not in html


def test_panel_polls_while_work_is_pending(client, world, model_version):
    case = world.submit_case()
    client.force_login(world.clinician)
    html = client.get(reverse("inference-case-analysis-panel", args=[case.pk])).content.decode()
    assert f'hx-get="/cases/{case.pk}/analysis/panel/?version={model_version.pk}"' in html
    assert 'hx-trigger="every 3s"' in html and 'hx-swap="outerHTML"' in html


def render_panel(user, case):
    request = RequestFactory().get("/")
    request.user = user
    template = Template("{% load inference_tags %}{% case_analysis case %}")
    return template.render(Context({"case": case, "request": request, "user": user, "csrf_token": "tok"}))


def test_panel_template(world, analysed):
    html = render_panel(world.pathologist, analysed)
    assert "data-inference-analysis" in html and "hx-get=" not in html  # done: nothing to poll
    assert 'type="range"' in html and "data-inference-heatmap" in html  # heatmap overlay with slider
    assert 'class="progress' in html  # probability bars
    assert "Needs attention." in html  # one image failed
    assert "Retry analysis" in html and "Re-run analysis" in html
    clinician_html = render_panel(world.clinician, analysed)
    assert "Retry analysis" not in clinician_html and "Re-run analysis" not in clinician_html
    assert "failed: The image file" in re.sub(r"<[^>]+>", "", clinician_html)  # the badge, then the reason


def test_panel_escapes_untrusted_file_names(world, model_version):
    case = world.submit_case(files=[smear_upload('<img src=x onerror="alert(1)">.png')])
    html = render_panel(world.clinician, case)
    assert "<img src=x" not in html


def test_signing_records_the_ai_suggestion(world, analysed):
    from cases.services import case_sign
    from inference.status import case_ai_suggestion, case_analysis_data

    expected = case_analysis_data(analysed)["result"]["label"]
    assert expected in {"benign", "early_pre_b", "pre_b", "pro_b"}
    assert case_ai_suggestion(analysed) == expected
    review = case_sign(signature_method="password", user=world.pathologist, case=analysed, diagnosis="non_diagnostic")
    review.refresh_from_db()
    assert review.ai_suggestion == expected


# --- API ---------------------------------------------------------------------------------------


def test_api_case_analysis_and_jobs(client, world, analysed):
    url = f"/api/cases/{analysed.pk}/analysis/"
    assert client.get(url).status_code in (401, 403)
    client.force_login(world.outsider)
    assert client.get(url).status_code == 404
    client.force_login(world.lab_admin)
    assert client.get(url).status_code == 403
    client.force_login(world.clinician)
    body = client.get(url).json()
    assert body["state"] == "done" and len(body["smears"]) == 2

    client.force_login(world.clinician)
    assert client.get("/api/analysis/jobs/").status_code == 403
    client.force_login(world.lab_admin)
    jobs = client.get("/api/analysis/jobs/?status=failed").json()
    assert [job["status"] for job in jobs["results"]] == ["failed"]
    assert jobs["results"][0]["case_reference"] == analysed.reference


def test_api_retry_and_rerun(client, world, analysed, model_file, published, django_capture_on_commit_callbacks):
    job = AnalysisJob.objects.get(smear__case=analysed, status="failed")
    client.force_login(world.clinician)
    response = client.post(f"/api/analysis/jobs/{job.pk}/retry/")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    client.force_login(world.other_pathologist)
    assert client.post(f"/api/analysis/jobs/{job.pk}/retry/").status_code == 404
    client.force_login(world.lab_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/analysis/jobs/{job.pk}/retry/")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert published.job_ids() == [job.pk]

    path, sha256 = model_file
    other = register_version(path, sha256, name="api-second", active=False)
    client.force_login(world.pathologist)
    response = client.post(
        f"/api/cases/{analysed.pk}/analysis/rerun/", {"model_version": other.pk}, content_type="application/json"
    )
    assert response.status_code == 202 and response.json()["model_version"]["name"] == "api-second"
    response = client.post(
        f"/api/cases/{analysed.pk}/analysis/rerun/", {"model_version": 99999}, content_type="application/json"
    )
    assert response.status_code == 400
    client.force_login(world.clinician)
    response = client.post(
        f"/api/cases/{analysed.pk}/analysis/rerun/", {"model_version": other.pk}, content_type="application/json"
    )
    assert response.status_code == 403


@pytest.mark.parametrize("page", ["status", "failed", "jobs"])
def test_pages_listing_versions_do_not_read_their_training_record(client, world, analysed, page):
    """A version's record (the split lists every training file: ~320 KB for the shipped model)
    is parsed for nothing on every status poll, failed-jobs page and jobs list otherwise."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = {"status": json_url(analysed), "failed": reverse("inference-failed-jobs"), "jobs": "/api/analysis/jobs/"}
    client.force_login(world.pathologist)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url[page]).status_code == 200
    version_reads = [q["sql"] for q in queries.captured_queries if '"training_modelversion"' in q["sql"]]
    assert version_reads and not any('"training_modelversion"."split"' in sql for sql in version_reads)

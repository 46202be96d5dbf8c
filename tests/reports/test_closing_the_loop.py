"""The whole loop in a real browser, with a real Celery worker: a clinician submits two images; the
worker classifies them; a pathologist filters the queue, opens the case, shows the heatmap on the
large image, reclassifies with a key and signs with re-authentication; the clinician is notified and
downloads the PDF (text checked) and the FHIR bundle (validated); an amendment gives an AMENDED PDF
and FHIR status ``amended``; a user of another organisation gets 404 for both.

Screenshots of each step go to TELEDIAG_TEST_ARTIFACTS (default var/test-artifacts/loop, not
committed).
"""

import io
import json
import os
from pathlib import Path

import pytest
from django.conf import settings
from PIL import Image

from cases.models import Case
from inference.models import Prediction
from tests.conftest import DEMO_PASSWORD
from tests.inference.conftest import model_file  # noqa: F401 - fixture
from tests.inference.test_integration import (  # noqa: F401 - fixtures
    broker_settings,
    case_finished,
    redis_broker,
    services_up,
    start_worker,
    version,
    wait_for,
)
from tests.portal.test_browser import sign_in
from tests.reports.conftest import pdf_text
from tests.reports.test_fhir import validated

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(os.environ.get("TELEDIAG_TEST_ARTIFACTS", Path(settings.BASE_DIR) / "var" / "test-artifacts")) / "loop"
KEYS = {"benign": "1", "early_pre_b": "2", "pre_b": "3", "pro_b": "4"}
LABELS = {"benign": "Benign", "early_pre_b": "Early Pre-B ALL", "pre_b": "Pre-B ALL", "pro_b": "Pro-B ALL"}


def _smear_files(directory):
    """Two smear-like PNGs (pink-purple fields with darker 'cells'), different enough to tell apart."""
    paths = []
    for index, (background, cell) in enumerate((((225, 200, 215), (95, 50, 140)), ((215, 205, 225), (70, 60, 150)))):
        image = Image.new("RGB", (480, 360), background)
        for x in range(40, 480, 90):
            for y in range(40, 360, 90):
                image.paste(cell, (x + 7 * index, y, x + 30 + 7 * index, y + 30))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        path = Path(directory) / f"field-{index + 1}.png"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def _shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _new_page(browser, errors):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Sign this diagnosis?" / "Record this amendment?"
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page


def test_from_submission_to_the_amended_report(
    live_server,
    world,
    browser,
    tmp_path,
    services_up,  # noqa: F811
    broker_settings,  # noqa: F811
    start_worker,  # noqa: F811
    version,  # noqa: F811
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    redis_broker()
    worker = start_worker(TELEDIAG_WORKER_WARMUP="false")
    base = live_server.url
    errors = []

    # --- The clinician submits an urgent case with two images. ---
    context, page = _new_page(browser, errors)
    sign_in(page, base, world.clinician)
    page.goto(f"{base}/cases/new/")
    page.select_option("#id_patient", str(world.patient.pk))
    page.check("input[name=priority][value=urgent]")
    page.fill("#id_clinical_notes", "Fatigue, bruising, WBC 38 x10^9/L with circulating blasts.")
    page.set_input_files("#id_images", [str(path) for path in _smear_files(tmp_path)])
    _shot(page, "1-clinician-submits")
    page.click("button:has-text('Submit case')")
    page.wait_for_selector("text=with 2 images")
    case = Case.objects.get(patient=world.patient)
    assert case.priority == "urgent" and case.smears.count() == 2

    # --- A real worker classifies both. ---
    wait_for(case_finished(case), "the worker to classify both images", worker)
    predictions = list(Prediction.objects.filter(smear__case=case))
    assert len(predictions) == 2 and all(p.model_version_id == version.pk for p in predictions)
    page.goto(f"{base}/cases/{case.pk}/")
    page.wait_for_selector("text=Preliminary")
    _shot(page, "2-clinician-sees-preliminary-result")
    context.close()

    # --- The pathologist filters the queue, opens the case, shows the heatmap, reclassifies by key, signs. ---
    context, page = _new_page(browser, errors)
    sign_in(page, base, world.pathologist)
    page.check("input[name=urgent]")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**/review/?*urgent=on*")
    row = page.locator(f"tr[data-case='{case.reference}']")
    assert row.count() == 1
    _shot(page, "3-queue-filtered")
    row.locator("a:has-text('Review')").click()
    page.wait_for_url(f"**/cases/{case.pk}/review/")
    viewer = page.locator("[data-testid=image-viewer]").first
    page.wait_for_function("() => !document.querySelector('[data-heatmap-toggle]').disabled")
    viewer.locator("[data-heatmap-toggle]").check()
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=viewer-heatmap]');"
        " return !i.hidden && i.complete && i.naturalWidth > 0; }"
    )
    _shot(page, "4-review-heatmap")
    ai_label = page.locator("[data-ai-label]").get_attribute("data-ai-label")
    diagnosis = next(name for name in KEYS if name != ai_label)  # reclassify: not what the AI says
    page.locator("h1").click()
    page.keyboard.press(KEYS[diagnosis])
    assert page.locator("input[name=sign-diagnosis]:checked").get_attribute("value") == diagnosis
    page.fill("#id_sign-comment", "Reclassified on morphology.")
    page.fill("#id_sign-password", DEMO_PASSWORD)  # the electronic signature
    _shot(page, "5-review-ready-to-sign")
    page.click("button:has-text('Sign final diagnosis')")
    page.wait_for_url("**/review/**")
    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED and case.diagnoses.get().signature_method == "password"
    context.close()

    # --- The clinician is notified, downloads the report and the bundle. ---
    context, page = _new_page(browser, errors)
    sign_in(page, base, world.clinician)
    assert page.locator("[data-testid=notification-count]").inner_text() == "1"
    page.click("[data-testid=notification-badge]")
    page.wait_for_url("**/notifications/")
    _shot(page, "6-clinician-notified")
    page.click(f"text={case.reference} signed")
    page.wait_for_url(f"**/cases/{case.pk}/")
    links = page.locator("[data-testid=report-links]")
    pdf_url = base + links.locator("[data-testid=report-pdf]").get_attribute("href")
    fhir_url = base + links.locator("[data-testid=report-fhir]").get_attribute("href")
    with page.expect_download() as download:  # ?download=1: served as an attachment
        page.evaluate("url => { window.location.href = url; }", pdf_url + "?download=1")
    report = Path(download.value.path()).read_bytes()
    text = " ".join(pdf_text(report)[0].split())
    assert case.reference in text and LABELS[diagnosis] in text and "decision support" in text
    assert "Reclassified on morphology." in text and "AMENDED" not in text
    with page.expect_download() as download:  # the link saves the bundle as a file
        links.locator("[data-testid=report-fhir]").click()
    bundle = validated(json.loads(Path(download.value.path()).read_text()))
    assert bundle["DiagnosticReport"][0]["status"] == "final"
    assert len(bundle["Media"]) == 2
    _shot(page, "7-clinician-case-signed")
    context.close()

    # --- The pathologist amends: an AMENDED report, FHIR status amended, the first version kept. ---
    context, page = _new_page(browser, errors)
    sign_in(page, base, world.pathologist)
    page.goto(f"{base}/cases/{case.pk}/review/")
    page.click("button:has-text('Amend the diagnosis')")
    page.check(f"input[name=amend-diagnosis][value={ai_label}]")
    page.fill("#id_amend-reason", "Flow cytometry agrees with the AI's subtype.")
    page.fill("#id_amend-password", DEMO_PASSWORD)
    page.click("button:has-text('Record amendment')")
    page.wait_for_load_state()
    case.refresh_from_db()
    assert case.status == Case.Status.AMENDED
    _shot(page, "8-amended")
    context.close()

    context, page = _new_page(browser, errors)
    sign_in(page, base, world.clinician)
    amended = page.request.get(pdf_url)
    text = " ".join(pdf_text(amended.body())[0].split())
    assert "AMENDED" in text and "Flow cytometry agrees" in text and LABELS[ai_label] in text
    first = " ".join(pdf_text(page.request.get(pdf_url + "?version=1").body())[0].split())
    assert "AMENDED" not in first and LABELS[diagnosis] in first
    assert validated(page.request.get(fhir_url).json())["DiagnosticReport"][0]["status"] == "amended"
    context.close()

    # --- Another organisation: 404 for the report and the bundle. ---
    context, page = _new_page(browser, errors)
    sign_in(page, base, world.outsider)
    assert page.request.get(pdf_url).status == 404
    assert page.request.get(fhir_url).status == 404
    context.close()
    assert not errors, errors

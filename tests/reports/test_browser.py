"""In a real browser (Debian's chromium, Playwright): the clinician is notified of the signature,
opens the case, downloads the report and its FHIR bundle from the case page, prints the page; a
user of another organisation gets 404 for both. Screenshots go to /tmp (artefacts, not committed)."""

from pathlib import Path

import pytest

from tests.portal.test_browser import sign_in
from tests.reports.conftest import amend, pdf_text, sign
from tests.reports.test_fhir import validated

SCREENSHOTS = Path("/tmp/telediag-reports")

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_clinician_is_notified_and_downloads_the_report(live_server, world, browser, analysed_case):
    SCREENSHOTS.mkdir(exist_ok=True)
    sign(analysed_case, world.pathologist)
    base = live_server.url
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

    sign_in(page, base, world.clinician)
    badge = page.locator("[data-testid=notification-badge]")
    assert badge.locator("[data-testid=notification-count]").inner_text() == "1"
    badge.click()
    page.wait_for_url("**/notifications/")
    page.screenshot(path=str(SCREENSHOTS / "1-notifications.png"), full_page=True)
    page.click(f"text={analysed_case.reference} signed: Pre-B ALL")
    page.wait_for_url(f"**/cases/{analysed_case.pk}/")

    links = page.locator("[data-testid=report-links]")
    links.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "2-case-page.png"), full_page=True)
    pdf_url = links.locator("[data-testid=report-pdf]").get_attribute("href")
    fhir_url = links.locator("[data-testid=report-fhir]").get_attribute("href")
    response = page.request.get(base + pdf_url)  # with the browser's session
    assert response.status == 200 and response.headers["content-type"] == "application/pdf"
    text = " ".join(pdf_text(response.body())[0].split())
    assert "Pre-B ALL" in text and "Paula Tester" in text and "decision support" in text
    bundle = page.request.get(base + fhir_url)
    assert bundle.status == 200
    assert validated(bundle.json())["DiagnosticReport"][0]["status"] == "final"

    # The printed page: the clinical content, without navigation or buttons.
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
    assert not page.locator("nav.navbar").is_visible()
    assert not links.locator("[data-testid=report-pdf]").is_visible()
    assert page.locator("[data-testid=final-diagnosis]").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "3-case-page-print.png"), full_page=True)
    page.emulate_media(media="screen")
    page.set_viewport_size({"width": 1366, "height": 900})

    # An amendment: a new notice, the AMENDED version, the first one still linked.
    amend(analysed_case, world.pathologist2)
    page.goto(base + f"/cases/{analysed_case.pk}/")
    assert page.locator("[data-testid=notification-count]").inner_text() == "2"
    versions = page.locator("[data-testid=report-versions] a")
    assert versions.count() == 1
    first = page.request.get(base + versions.first.get_attribute("href"))
    assert "AMENDED" not in " ".join(pdf_text(first.body())[0].split())
    latest = page.request.get(base + pdf_url)
    assert "AMENDED" in " ".join(pdf_text(latest.body())[0].split())
    page.screenshot(path=str(SCREENSHOTS / "4-case-page-amended.png"), full_page=True)

    page.click("[data-testid=notification-badge]")
    page.click("[data-testid=mark-all-read]")
    page.wait_for_load_state()
    assert page.locator("[data-testid=notification-count]").count() == 0
    assert not console_errors, console_errors
    context.close()

    # Another organisation: 404 for the report and the bundle, in its own browser session.
    other = browser.new_context()
    outsider = other.new_page()
    sign_in(outsider, base, world.outsider)
    assert outsider.request.get(base + pdf_url).status == 404
    assert outsider.request.get(base + fhir_url).status == 404
    other.close()

"""A lab admin follows the Monitoring link, reads a site's panel and acknowledges its alert in
Debian's chromium (Playwright, live server); the page breaks no Content-Security-Policy rule."""

import pytest

from audit.models import AuditEvent
from monitoring.models import MonitoringAlert
from tests.monitoring.conftest import analysed_case, make_version, sign
from tests.portal.test_browser import sign_in

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_lab_admin_reads_performance_and_acknowledges(live_server, world, browser, settings):
    settings.MONITORING_WINDOW_CASES, settings.MONITORING_MIN_CASES = 10, 5
    version = make_version("mobilenet-browser", ood_threshold=10.0)
    for ai, diagnosis in [("pre_b", "pre_b")] * 2 + [("benign", "pre_b")] * 5:
        sign(world, analysed_case(world, version, [ai], ood=[4.0]), diagnosis)  # commits: the check runs
    assert MonitoringAlert.objects.filter(kind="agreement").count() == 1

    page = browser.new_page()
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    sign_in(page, live_server.url, world.lab_admin)
    page.click("nav >> text=Monitoring")
    page.wait_for_url("**/monitoring/performance/")
    panel = page.locator("[data-testid=performance-row]")
    assert panel.count() == 1
    assert "St Mary's Clinic" in panel.inner_text() and "mobilenet-browser" in panel.inner_text()
    assert "28.6 %" in page.locator("[data-testid=agreement]").inner_text()  # 2 of 7
    assert page.locator("[data-testid=confusion] tbody tr").count() == 4
    page.screenshot(path="/tmp/monitoring-performance.png", full_page=True)  # for a person to look at
    banner = page.locator("[data-testid=monitoring-alert]")
    assert banner.count() == 1 and "below the 95%" in banner.inner_text()

    banner.locator("button:has-text('Acknowledge')").click()
    page.wait_for_load_state()
    assert page.url.endswith("/monitoring/performance/")
    assert page.locator("[data-testid=monitoring-alert]").count() == 0
    assert "Alert acknowledged" in page.content()
    assert AuditEvent.objects.filter(action="alert_acknowledged", actor=world.lab_admin).exists()
    assert not console_errors, console_errors

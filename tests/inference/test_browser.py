"""The live analysis panel in a real browser: polling updates it without a reload; slider; retry.

Drives Debian's chromium (/usr/bin/chromium) with Playwright against pytest-django's live server.
Skips locally when chromium is missing; fails in CI.
"""

import pytest
from django.conf import settings

from inference.models import AnalysisJob
from inference.tasks import analyse_smear
from tests.conftest import smear_upload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def no_broker(monkeypatch):
    """Jobs stay queued until the test runs them (no worker here)."""
    monkeypatch.setattr(analyse_smear, "apply_async", lambda *args, **kwargs: None)


def logged_in_page(browser, client, live_server, user):
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    return context, page


def test_panel_updates_live_and_retry_works(live_server, client, world, model_version, browser, no_broker):
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png", colour=(30, 160, 60))])
    first, second = AnalysisJob.objects.filter(smear__case=case).order_by("pk")
    context, page = logged_in_page(browser, client, live_server, world.pathologist)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    page.goto(f"{live_server.url}/cases/{case.pk}/analysis/")
    state = page.locator("[data-testid=ai-state]")
    assert state.inner_text().strip() == "queued"
    assert "queued (waiting" in page.locator("[data-testid=ai-job-status]").first.inner_text()

    # The worker finishes one image, then fails the other: the page follows without a reload.
    page.evaluate("window.__marker = 'no reload'")
    assert analyse_smear(first.pk) == "done"
    second.smear.image.storage.delete(second.smear.image.name)
    assert analyse_smear(second.pk) == "failed"
    page.wait_for_function("() => document.querySelector('[data-testid=ai-state]').textContent.trim() === 'done'")
    assert page.evaluate("window.__marker") == "no reload"
    assert page.locator("[data-testid=ai-case-label]").inner_text()
    assert page.locator("[data-testid=ai-attention]").count() == 1
    assert "failed: The image file" in page.locator("[data-testid=ai-job-status]").nth(1).inner_text()

    # Heatmap overlay and its opacity slider.
    overlay = page.locator("[data-inference-heatmap]")
    assert overlay.count() == 1
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-inference-heatmap]'); return i.complete && i.naturalWidth > 0; }"
    )
    page.locator("[data-inference-opacity]").evaluate(
        "el => { el.value = 20; el.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    assert overlay.evaluate("el => el.style.opacity") == "0.2"

    # Retry the failed image from the panel: queued again, then done once the image is back.
    second.smear.image.storage.save(second.smear.image.name, smear_upload("b.png", colour=(30, 160, 60)))
    page.click("button:has-text('Retry analysis')")
    page.wait_for_function("() => document.querySelector('[data-testid=ai-state]').textContent.trim() === 'queued'")
    second.refresh_from_db()
    assert second.status == "queued"
    assert analyse_smear(second.pk) == "done"
    page.wait_for_function("() => document.querySelector('[data-testid=ai-state]').textContent.trim() === 'done'")
    assert (
        page.locator("[data-testid=ai-attention]").count() == 0
        or "disagree" in page.locator("[data-testid=ai-attention]").inner_text()
    )
    assert page.locator("[data-inference-opacity]").count() == 2
    assert page.evaluate("window.__marker") == "no reload"
    assert not errors, errors
    context.close()

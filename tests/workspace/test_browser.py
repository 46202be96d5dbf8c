"""The review workspace in a real browser (Debian's chromium, driven by Playwright, against
pytest-django's live server): a pathologist filters the queue, opens a case, toggles the heatmap
on the large image, zooms and pans, picks a class with a key, accepts the AI's suggestion with
another, signs with re-authentication and lands on the next case. The pages must not scroll
sideways from 375 to 1920 px (1366 and 1280 px above all), and no probability row may spill out of its card.

The analysis is the real task code with the real (small) Keras model, run in this process, as in
tests/inference/test_browser.py. Screenshots go to TELEDIAG_TEST_ARTIFACTS (default
var/test-artifacts/workspace, not committed).
"""

import os
from pathlib import Path

import pytest
from django.conf import settings

from cases.models import Case
from inference.models import AnalysisJob
from inference.tasks import analyse_smear
from tests.conftest import DEMO_PASSWORD, smear_upload
from tests.inference.conftest import model_file, model_version  # noqa: F401 - fixtures
from tests.portal.test_browser import sign_in

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(os.environ.get("TELEDIAG_TEST_ARTIFACTS", Path(settings.BASE_DIR) / "var" / "test-artifacts")) / (
    "workspace"
)

# No horizontal scroll, and every probability row inside its own card, which overlaps no other card.
LAYOUT_CHECK = """() => {
  const problems = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth) problems.push(`page ${doc.scrollWidth} px wide in ${window.innerWidth}`);
  const cards = [...document.querySelectorAll('.td-ai-smear')];
  cards.forEach((card, i) => {
    const box = card.getBoundingClientRect();
    if (box.width < 200) problems.push(`AI card ${i} only ${Math.round(box.width)} px wide`);
    card.querySelectorAll('.td-prob-row, .td-prob-row > *').forEach((row) => {
      const r = row.getBoundingClientRect();
      if (r.right > box.right + 0.5 || r.left < box.left - 0.5) problems.push(`a row of card ${i} spills out`);
    });
    cards.forEach((other, j) => {
      if (j <= i) return;
      const o = other.getBoundingClientRect();
      const overlap = box.left < o.right && o.left < box.right && box.top < o.bottom && o.top < box.bottom;
      if (overlap) problems.push(`cards ${i} and ${j} overlap`);
    });
  });
  document.querySelectorAll('.td-ai-result .td-prob-row').forEach((row) => {
    const panel = row.closest('.td-ai-result').getBoundingClientRect();
    const r = row.getBoundingClientRect();
    if (r.right > panel.right + 0.5) problems.push('a case-level row spills out of the panel');
  });
  return problems;
}"""


@pytest.fixture
def no_broker(monkeypatch):
    """Jobs wait until the test runs them with the real task code (no broker needed)."""
    monkeypatch.setattr(analyse_smear, "apply_async", lambda *args, **kwargs: None)


def analyse_all(case):
    for job in AnalysisJob.objects.filter(smear__case=case).order_by("pk"):
        assert analyse_smear(job.pk) == "done"


def check_layout(page, where):
    for width in (1920, 1366, 1280, 768, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        problems = page.evaluate(LAYOUT_CHECK)
        assert problems == [], f"{where} at {width} px: {problems}"
        if width in (1366, 1280):
            page.screenshot(path=str(ARTIFACTS / f"{where}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 900})


def test_pathologist_reviews_in_the_workspace(live_server, world, browser, model_version, no_broker):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    urgent = world.submit_case(
        priority="urgent",
        files=[smear_upload("left.png", size=(800, 600)), smear_upload("right.png", (800, 600), (60, 90, 170))],
    )
    routine = world.submit_case(files=[smear_upload("other.png", size=(640, 480), colour=(200, 150, 190))])
    analyse_all(urgent)
    analyse_all(routine)
    urgent.refresh_from_db()
    assert urgent.status == Case.Status.AWAITING_REVIEW

    base = live_server.url
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Sign this diagnosis?"
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    # --- The queue: both cases with the AI's suggestion; the urgent filter keeps one. ---
    sign_in(page, base, world.pathologist)
    assert page.url.endswith("/review/")
    table = page.locator("[data-testid=review-queue]")
    assert table.locator("tr[data-case]").count() == 2
    row = table.locator(f"tr[data-case='{urgent.reference}']")
    suggestion = row.locator("[data-testid=queue-ai]").inner_text().strip()
    assert suggestion and "_" not in suggestion  # a human label
    assert row.locator("[data-testid=queue-top]").inner_text().strip().endswith("%")
    check_layout(page, "1-queue")
    # A case arrives: the background refresh (htmx, normally every 20 s; triggered now) shows it, marked.
    late = world.submit_case(files=[smear_upload("late.png", size=(640, 480), colour=(150, 120, 200))])
    page.evaluate(
        "htmx.ajax('GET', location.pathname + location.search,"
        " {source: '#queue-region', target: '#queue-region', swap: 'outerHTML'})"
    )
    page.wait_for_selector(f"tr[data-case='{late.reference}'].td-row-new")
    assert "3 waiting" in page.locator("[data-testid=queue-counts]").inner_text()
    assert table.locator("tr.td-row-new").count() == 1
    page.check("input[name=urgent]")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**/review/?*urgent=on*")
    assert table.locator("tr[data-case]").count() == 1
    assert "1 match" in page.locator("[data-testid=queue-counts]").inner_text()
    page.screenshot(path=str(ARTIFACTS / "2-queue-urgent.png"), full_page=True)

    # --- Open the case: heatmap on the large image, zoom, pan. ---
    row.locator("a:has-text('Review')").click()
    page.wait_for_url(f"**/cases/{urgent.pk}/review/")
    viewer = page.locator("[data-testid=image-viewer]").first
    toggle = viewer.locator("[data-heatmap-toggle]")
    page.wait_for_function("() => !document.querySelector('[data-heatmap-toggle]').disabled")
    overlay = viewer.locator("[data-testid=viewer-heatmap]")
    assert overlay.is_hidden()
    toggle.check()
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=viewer-heatmap]');"
        " return !i.hidden && i.complete && i.naturalWidth > 0; }"
    )
    assert overlay.is_visible()
    viewer.locator("[data-heatmap-strength]").fill("80")
    assert overlay.evaluate("el => el.style.opacity") == "0.8"
    viewer.locator("[data-zoom-frame]").focus()
    page.keyboard.press("h")  # the shortcut hides it again, and shows it
    assert overlay.is_hidden()
    page.keyboard.press("h")
    assert overlay.is_visible()

    frame = viewer.locator("[data-zoom-frame]")
    image = viewer.locator("[data-testid=smear-image]")
    fit_width = image.bounding_box()["width"]
    frame_box = frame.bounding_box()
    assert fit_width <= frame_box["width"] + 1
    page.screenshot(path=str(ARTIFACTS / "3-review-heatmap.png"), full_page=True)
    for _ in range(4):
        viewer.locator("[data-zoom-step='1']").click()
    zoomed = image.bounding_box()
    assert zoomed["width"] > 2 * fit_width and zoomed["width"] > frame_box["width"]  # really magnified
    assert viewer.locator("[data-testid=zoom-level]").inner_text().endswith("%")
    # the heatmap follows the image
    assert abs(overlay.bounding_box()["width"] - zoomed["width"]) < 1
    # drag to pan
    centre = (frame_box["x"] + frame_box["width"] / 2, frame_box["y"] + frame_box["height"] / 2)
    page.mouse.move(*centre)
    page.mouse.down()
    page.mouse.move(centre[0] + 120, centre[1] + 60, steps=5)
    page.mouse.up()
    panned = image.bounding_box()
    assert panned["x"] > zoomed["x"] + 50
    # wheel zoom at the cursor
    page.mouse.wheel(0, -300)
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=smear-image]').getBoundingClientRect().width > {zoomed['width'] + 1}"
    )
    page.screenshot(path=str(ARTIFACTS / "4-review-zoomed.png"), full_page=True)
    page.keyboard.press("0")  # back to fit
    assert abs(image.bounding_box()["width"] - fit_width) < 1

    # --- Keys: pick a class, ignored while typing; accept the AI; next image. ---
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("2")
    assert page.locator("input[name=sign-diagnosis]:checked").get_attribute("value") == "early_pre_b"
    page.fill("#id_sign-comment", "")
    page.focus("#id_sign-comment")
    page.keyboard.type("a4 blasts")  # typed into the comment, not shortcuts
    assert page.locator("input[name=sign-diagnosis]:checked").get_attribute("value") == "early_pre_b"
    assert page.input_value("#id_sign-comment") == "a4 blasts"
    page.locator("h1").click()
    ai_label = page.locator("[data-ai-label]").get_attribute("data-ai-label")
    assert ai_label in {"benign", "early_pre_b", "pre_b", "pro_b"}
    accept = page.locator("[data-testid=accept-ai]")
    assert "_" not in accept.inner_text()
    page.keyboard.press("4")
    page.keyboard.press("a")
    assert page.locator("input[name=sign-diagnosis]:checked").get_attribute("value") == ai_label
    assert page.evaluate("document.activeElement.id") == "id_sign-password"  # ready to sign
    page.locator("h1").click()
    page.keyboard.press("n")
    assert page.evaluate("document.activeElement.closest('[data-zoom-viewer]').id") == "image-2"
    assert "Preliminary — not reviewed by a pathologist" in page.locator("[data-testid=ai-result]").inner_text()
    check_layout(page, "5-review")

    # --- Sign with the password (re-authentication): on to the next case. ---
    page.fill("#id_sign-password", DEMO_PASSWORD)
    page.click("button:has-text('Sign final diagnosis')")
    page.wait_for_url(f"**/cases/{routine.pk}/review/")
    assert f"Case {urgent.reference} signed." in page.locator(".td-messages").inner_text()
    page.screenshot(path=str(ARTIFACTS / "6-next-case.png"), full_page=True)
    urgent.refresh_from_db()
    review = urgent.diagnoses.get()
    assert urgent.status == Case.Status.SIGNED and review.diagnosis == ai_label
    assert review.signature_method == "password" and review.comment == "a4 blasts"

    # The routine case: signed with the keys and the password; next comes the case that just arrived.
    page.locator("h1").click()
    page.keyboard.press("a")
    page.fill("#id_sign-password", DEMO_PASSWORD)
    page.click("button:has-text('Sign final diagnosis')")
    page.wait_for_url(f"**/cases/{late.pk}/review/")
    assert routine.diagnoses.get().signature_method == "password"

    # Not analysed yet: nothing to accept. The worker finishes: the header, the summary and the panel
    # follow without a reload.
    status = page.locator("[data-testid=case-status]")
    assert "Submitted" in status.inner_text() and page.locator("[data-testid=accept-ai]").is_disabled()
    page.evaluate("window.__marker = 'no reload'")
    analyse_all(late)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=case-status]').textContent.includes('Awaiting review')",
        timeout=15_000,
    )
    assert "Awaiting review" in page.locator("#case-summary-status").inner_text()
    page.wait_for_function("() => !document.querySelector('[data-testid=accept-ai]').disabled", timeout=15_000)
    page.wait_for_function("() => !document.querySelector('[data-heatmap-toggle]').disabled")
    assert page.evaluate("window.__marker") == "no reload"
    page.screenshot(path=str(ARTIFACTS / "7-live-status.png"), full_page=True)
    assert not errors, errors  # CSP violations show up here too
    context.close()

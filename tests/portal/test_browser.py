"""One real-browser walk through the portal: a clinician submits, a pathologist signs.

Drives Debian's chromium (/usr/bin/chromium) with Playwright against pytest-django's live server.
"""

import shutil
from pathlib import Path

import pytest

from cases.models import Case
from tests.conftest import DEMO_PASSWORD

SCREENSHOT = Path("/tmp/review.png")

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def smear_file(tmp_path, settings):
    """A real smear image from the data set when it is here, else a synthetic one."""
    dataset = Path(settings.DATASET_DIR) / "original" / "Pre"
    real = sorted(dataset.glob("*.jpg"))[:1] if dataset.is_dir() else []
    if real:
        target = tmp_path / "smear-pre-b.jpg"
        shutil.copyfile(real[0], target)
        return target
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480), (236, 214, 222))
    draw = ImageDraw.Draw(image)
    for i, (x, y) in enumerate([(120, 110), (330, 240), (520, 150), (210, 370), (470, 380)]):
        r = 38 + 6 * (i % 3)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(188, 120, 170))
        draw.ellipse((x - r // 2, y - r // 2, x + r // 2, y + r // 2), fill=(92, 48, 120))
    target = tmp_path / "smear-synthetic.png"
    image.save(target)
    return target


def sign_in(page, base_url, user):
    from security.policy import requires_second_factor
    from tests.conftest import DEMO_PASSWORD, current_totp_code, enrol_second_factor

    if requires_second_factor(user):
        enrol_second_factor(user)  # set up earlier (tests/security covers enrolment in the browser)
    page.goto(base_url + "/")
    page.wait_for_url("**/accounts/login/**")
    page.fill("#id_username", user.username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_load_state()
    if requires_second_factor(user):  # the second step: a code from the authenticator app
        page.wait_for_url("**/accounts/two-factor/verify/**")
        page.fill("#id_code", current_totp_code(user))
        page.click("button:has-text('Verify')")
        page.wait_for_load_state()


def test_clinician_submits_and_pathologist_signs(live_server, world, browser, smear_file):
    base = live_server.url
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the "Sign this diagnosis?" confirmation
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

    # --- The clinician registers a patient and submits a case with one image. ---
    sign_in(page, base, world.clinician)
    assert page.url.endswith("/cases/")
    page.click("nav >> text=Patients")
    page.click("text=Register a patient")
    page.fill("#id_mrn", "BRW-001")
    page.fill("#id_given_name", "Robin")
    page.fill("#id_family_name", "Browser")
    page.select_option("#id_sex", "F")
    page.fill("#id_date_of_birth", "2014-06-02")
    page.click("button:has-text('Register patient')")
    page.wait_for_selector("text=Patient Robin Browser (BRW-001) registered.")

    page.click("text=Submit a case for this patient")
    page.wait_for_selector("#id_images")
    assert page.eval_on_selector("#id_patient", "el => el.options[el.selectedIndex].text").startswith("Browser, Robin")
    page.check("input[name=priority][value=urgent]")
    page.fill("#id_clinical_notes", "Fatigue, bruising, WBC 38 x10^9/L with circulating blasts.")
    page.set_input_files("#id_images", str(smear_file))
    page.click("button:has-text('Submit case')")
    page.wait_for_selector("text=submitted to Central Haematology Laboratory with 1 image.")
    case = Case.objects.get(patient__mrn="BRW-001")
    assert case.priority == "urgent" and case.smears.count() == 1
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/accounts/login/")

    # --- The pathologist finds it in the queue, reviews the image, signs. ---
    sign_in(page, base, world.pathologist)
    assert page.url.endswith("/review/")
    row = page.locator(f"tr[data-case='{case.reference}']")
    assert row.count() == 1
    assert "URGENT" in row.inner_text()
    row.locator("a:has-text('Review')").click()
    page.wait_for_url(f"**/cases/{case.pk}/review/")

    image = page.locator("[data-testid=smear-image]").first
    image.wait_for()
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-testid=smear-image]');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )
    assert image.evaluate("img => img.naturalWidth") == case.smears.get().width
    assert "Waiting for a model" in page.locator("[data-testid=ai-result]").inner_text()
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.check("input[name=sign-diagnosis][value=pre_b]")
    page.fill("#id_sign-comment", "Lymphoblasts with fine chromatin; consistent with Pre-B ALL.")
    page.fill("#id_sign-password", DEMO_PASSWORD)  # the electronic signature
    page.click("button:has-text('Sign final diagnosis')")
    page.wait_for_url("**/review/")  # nothing else waits: back to the (empty) queue
    assert f"Case {case.reference} signed." in page.locator(".td-messages").inner_text()
    page.goto(f"{base}/cases/{case.pk}/review/")
    page.wait_for_selector("[data-testid=signed-state]")
    assert page.locator("text=Signed — read-only").count() == 1
    assert page.locator("[data-testid=sign-form]").count() == 0
    assert "Pre-B ALL" in page.locator("[data-testid=signed-state]").inner_text()
    page.screenshot(path=str(SCREENSHOT.with_name("review-signed.png")), full_page=True)

    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED and case.signed_by == world.pathologist
    assert not console_errors, console_errors
    context.close()

"""Every portal page, for every role, measured in Chromium as a new user meets it.

- axe-core (WCAG 2.1 A/AA rules): no critical and no serious violation on any page, in its plain
  state and after a failed submit (errors shown);
- no sideways scrolling at 320, 768, 1366 and 1920 px;
- after a failed submit, focus is on the error summary or the first invalid field, and every
  invalid field names its error message through aria-describedby.
"""

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from cases.models import Case
from cases.services import case_sign
from inference.models import AnalysisJob
from inference.tasks import analyse_smear
from tests.conftest import DEMO_PASSWORD, current_totp_code, enrol_second_factor, smear_upload, usable_totp_code
from tests.inference.conftest import build_test_model_file, register_version
from tests.portal.a11y import axe_violations, blocking, describe, focus_rings, overflow_at, weak_rings

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cases(world, tmp_path):
    """An analysed routine case, an urgent one waiting, and a signed one."""
    path, sha256 = build_test_model_file(tmp_path)
    register_version(path, sha256)
    analysed = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png", colour=(20, 200, 20))])
    for job in AnalysisJob.objects.filter(smear__case=analysed):
        analyse_smear(job.pk)
    urgent = world.submit_case(files=[smear_upload("u.png")], priority="urgent")
    signed = world.submit_case(files=[smear_upload("s.png")])
    case_sign(signature_method="password", user=world.pathologist, case=signed, diagnosis="pre_b", comment="Blasts.")
    return {"analysed": analysed, "urgent": urgent, "signed": Case.objects.get(pk=signed.pk)}


class Audit:
    """Measures pages one after the other and reports every problem at the end."""

    def __init__(self, page, base):
        self.page, self.base = page, base
        self.problems = []
        self.pages = 0

    def visit(self, label, path):
        response = self.page.goto(self.base + path)
        self.page.wait_for_load_state("networkidle")
        self.measure(label)
        return response

    def measure(self, label):
        self.pages += 1
        self.problems += describe(label, blocking(axe_violations(self.page)))
        for width, (scroll, inner, widest) in overflow_at(self.page).items():
            self.problems.append(f"{label}: scrolls sideways at {width} px ({scroll} > {inner}; {widest})")

    def failed_submit(self, label, button):
        """Submit a form that will be refused; then measure, and check focus and error links."""
        self.page.click(button)
        self.page.wait_for_load_state("networkidle")
        self.measure(label)
        focus = self.page.evaluate(
            """() => { const el = document.activeElement;
              return el ? [el.tagName.toLowerCase(), el.id, el.className, el.getAttribute('aria-invalid')] : null; }"""
        )
        if not focus or focus[0] == "body" or not (focus[3] == "true" or "td-error-summary" in (focus[2] or "")):
            self.problems.append(f"{label}: focus after the failed submit is on {focus}")
        unlinked = self.page.evaluate(
            """() => Array.from(document.querySelectorAll('[aria-invalid=true]')).filter(el => {
                const ids = (el.getAttribute('aria-describedby') ||
                             (el.closest('fieldset') && el.closest('fieldset').getAttribute('aria-describedby')) || '')
                            .split(/\\s+/).filter(Boolean);
                return !ids.some(id => { const n = document.getElementById(id);
                                         return n && n.textContent.trim() &&
                                         (n.classList.contains('invalid-feedback') ||
                                          n.classList.contains('td-error-summary')); });
              }).map(el => el.name || el.id)"""
        )
        if unlinked:
            self.problems.append(f"{label}: invalid fields without a linked error message: {unlinked}")
        broken = self.page.evaluate(
            """() => Array.from(document.querySelectorAll('[aria-describedby]')).flatMap(el =>
                 el.getAttribute('aria-describedby').split(/\\s+/).filter(id => id && !document.getElementById(id))
                   .map(id => (el.name || el.id) + ' -> ' + id))"""
        )
        if broken:
            self.problems.append(f"{label}: aria-describedby points at missing ids: {broken}")


def sign_in(audit, user, *, measure=False):
    page = audit.page
    page.context.clear_cookies()
    page.goto(audit.base + "/accounts/login/")
    if measure:
        audit.measure("login")
        page.fill("#id_username", user.username)
        page.fill("#id_password", "wrong password")
        audit.failed_submit("login (refused)", "button:has-text('Sign in')")
    page.fill("#id_username", user.username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_load_state()
    if "/two-factor/verify/" in page.url:
        if measure:
            audit.measure("two-factor verify")
            page.fill("#id_code", "000000")
            audit.failed_submit("two-factor verify (refused)", "button:has-text('Verify')")
        page.fill("#id_code", current_totp_code(user))
        page.click("button:has-text('Verify')")
        page.wait_for_load_state()


@pytest.fixture
def audit(live_server, browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    yield Audit(page, live_server.url)
    context.close()


def assert_clean(audit, minimum):
    assert audit.pages >= minimum
    assert not audit.problems, f"{len(audit.problems)} problems on {audit.pages} pages:\n" + "\n".join(audit.problems)


def test_clinician_pages(audit, world, cases):
    sign_in(audit, world.clinician, measure=True)
    case = cases["analysed"]
    audit.visit("case list", "/cases/")
    audit.visit("case list (filtered)", "/cases/?status=submitted&priority=urgent")
    audit.visit("case new", "/cases/new/")
    audit.failed_submit("case new (refused)", "button:has-text('Submit case')")
    audit.visit("case detail (analysed)", f"/cases/{case.pk}/")
    audit.visit("case detail (signed)", f"/cases/{cases['signed'].pk}/")
    audit.visit("case analysis", f"/cases/{case.pk}/analysis/")
    audit.visit("patient list", "/patients/")
    audit.visit("patient detail", f"/patients/{world.patient.pk}/")
    audit.visit("patient form", "/patients/new/")
    audit.failed_submit("patient form (refused)", "button:has-text('Register patient')")
    audit.visit("account security", "/accounts/security/")
    audit.visit("password change", "/accounts/password/change/")
    audit.page.fill("#id_old_password", "not my password")
    audit.failed_submit("password change (refused)", "main form button[type=submit]")
    audit.visit("two-factor setup", "/accounts/two-factor/setup/")
    audit.page.fill("#id_code", "000000")
    audit.failed_submit("two-factor setup (refused)", "main form button[type=submit]")
    device = TOTPDevice.objects.get(user=world.clinician, confirmed=False)
    audit.page.fill("#id_code", usable_totp_code(device))  # right after the wrong code above
    audit.page.click("main form button[type=submit]")
    audit.page.wait_for_selector("text=recovery codes")
    audit.measure("recovery codes")
    assert audit.visit("403", "/review/").status == 403
    assert audit.visit("404", "/cases/999999/").status == 404
    audit.visit("notifications", "/notifications/")
    audit.visit("API docs", "/api/docs/")
    assert_clean(audit, 23)


def test_pathologist_pages(audit, world, cases):
    enrol_second_factor(world.pathologist)
    sign_in(audit, world.pathologist, measure=True)
    audit.visit("review queue", "/review/")
    audit.visit("case list", "/cases/")
    case = cases["analysed"]
    audit.visit("review page (analysed)", f"/cases/{case.pk}/review/")
    audit.failed_submit("review page (sign refused)", "button:has-text('Sign final diagnosis')")
    audit.visit("review page (waiting)", f"/cases/{cases['urgent'].pk}/review/")
    audit.visit("review page (signed)", f"/cases/{cases['signed'].pk}/review/")
    audit.page.click("button:has-text('Amend the diagnosis')")
    audit.page.wait_for_selector("#amend-panel.show")
    audit.failed_submit("review page (amend refused)", "button:has-text('Record amendment')")
    audit.visit("case detail", f"/cases/{case.pk}/")
    audit.visit("failed analyses", "/analysis/failed/")
    audit.visit("notifications", "/notifications/")
    assert audit.visit("monitoring alerts", "/monitoring/").status == 200  # a pathologist's monitoring page
    audit.visit("account security", "/accounts/security/")
    assert audit.visit("403", "/patients/").status == 403
    assert audit.visit("404", "/cases/999999/review/").status == 404
    audit.visit("API docs", "/api/docs/")
    assert_clean(audit, 19)


def test_lab_admin_pages(audit, world, cases):
    enrol_second_factor(world.lab_admin)
    sign_in(audit, world.lab_admin)
    audit.visit("users", "/accounts/users/")
    audit.visit("user new", "/accounts/users/new/")
    audit.failed_submit("user new (refused)", "main form button[type=submit]")
    audit.visit("user edit", f"/accounts/users/{world.pathologist.pk}/")
    audit.visit("audit trail", "/audit/")
    audit.visit("audit trail (filtered)", f"/audit/?action=viewed&case={cases['analysed'].reference}")
    audit.page.fill("#id_user", "nobody-by-this-name")
    audit.failed_submit("audit trail (refused filter)", "main form button:has-text('Filter')")
    assert audit.visit("400", "/audit/?before=not-a-token").status == 400
    audit.visit("failed analyses", "/analysis/failed/")
    for path in ("/monitoring/", "/monitoring/performance/", "/monitoring/alerts/"):
        assert audit.visit(f"monitoring {path}", path).status == 200
    audit.visit("account security", "/accounts/security/")
    assert audit.visit("403", "/cases/").status == 403
    assert audit.visit("404", "/accounts/users/999999/").status == 404
    assert_clean(audit, 15)


def test_superuser_admin_pages(audit, world, cases):
    from accounts.models import User

    root = User.objects.create_superuser("root_admin", password=DEMO_PASSWORD)
    enrol_second_factor(root)
    sign_in(audit, root)
    assert audit.visit("admin index", "/admin/").status == 200
    assert audit.visit("admin audit events", "/admin/audit/auditevent/").status == 200
    assert audit.visit("admin users", "/admin/accounts/user/").status == 200
    assert audit.visit("admin user change", f"/admin/accounts/user/{world.pathologist.pk}/change/").status == 200
    assert audit.visit("admin organisations", "/admin/accounts/organisation/").status == 200
    assert audit.visit("admin model versions", "/admin/training/modelversion/").status == 200
    assert audit.visit("admin cases", "/admin/cases/case/").status == 200
    assert_clean(audit, 7)


def test_signed_out_pages_of_the_demo(audit, world, settings):
    settings.DEMO_MODE = True  # the banner is measured too
    audit.visit("login (demo)", "/accounts/login/")
    assert audit.page.locator("[data-testid=demo-banner]").count() == 1
    assert audit.visit("404 signed out", "/no-such-page/").status == 404
    page = audit.page
    page.goto(audit.base + "/accounts/login/")
    for _ in range(6):  # django-axes: five wrong passwords lock the account for this address
        page.fill("#id_username", world.clinician.username)
        page.fill("#id_password", "wrong password")
        page.click("button:has-text('Sign in')")
        page.wait_for_load_state()
        if page.locator("#id_password").count() == 0:
            break
    audit.measure("locked out")
    assert "locked" in page.content().lower()
    assert_clean(audit, 3)


def test_api_docs_work_offline_behind_a_login(audit, world):
    """/api/docs/ asks for a login, then renders every operation from files served here only."""
    page, base = audit.page, audit.base
    elsewhere = []
    page.context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(base)
            else (elsewhere.append(route.request.url), route.abort())
        ),
    )
    page.goto(base + "/api/docs/")
    assert "/accounts/login/" in page.url  # anonymous: to the login page
    sign_in(audit, world.clinician)
    page.goto(base + "/api/docs/")
    page.wait_for_selector(".opblock-summary-control")
    assert page.locator(".opblock").count() > 10
    assert elsewhere == []
    audit.measure("API docs")
    assert_clean(audit, 1)


def test_keyboard_focus_is_visible_everywhere_and_a_skip_link_comes_first(audit, world, cases, settings):
    """Every control reached with Tab has a ring of 2 px or more at 3:1 or more against its
    surroundings (WCAG 2.4.7 / 1.4.11), the active navbar link and the demo banner included."""
    settings.DEMO_MODE = True
    page = audit.page
    enrol_second_factor(world.pathologist)
    sign_in(audit, world.pathologist)
    problems = []
    for path in ("/review/", f"/cases/{cases['analysed'].pk}/review/", f"/cases/{cases['signed'].pk}/"):
        page.goto(audit.base + path)
        page.wait_for_load_state("networkidle")
        page.keyboard.press("Tab")
        skip = page.evaluate(
            "() => [document.activeElement.className, document.activeElement.getBoundingClientRect().top]"
        )
        assert skip[0] == "td-skip-link" and skip[1] >= 0, (path, skip)
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "content"
        page.goto(audit.base + path)
        page.wait_for_load_state("networkidle")
        rings = focus_rings(page)
        assert len(rings) >= 8, (path, rings)
        assert any("Review queue" in r["label"] for r in rings)  # the active navbar link
        problems += [f"{path}: {r}" for r in weak_rings(rings)]
    assert problems == []

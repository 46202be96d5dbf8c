"""In a real browser, the portal, the API docs and the admin run under the CSP without a violation."""

import pytest

from tests.conftest import DEMO_PASSWORD, current_totp_code, enrol_second_factor

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_pages_run_without_csp_violations(live_server, world, browser, django_user_model):
    case = world.submit_case()
    root = django_user_model.objects.create_superuser("root_admin", "root@example.org", DEMO_PASSWORD)
    context = browser.new_context()
    context.set_default_timeout(20_000)
    page = context.new_page()
    violations = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )

    def sign_in(user):
        enrol_second_factor(user)  # set up earlier (test_two_factor covers enrolment in the browser)
        context.clear_cookies()
        page.goto(live_server.url + "/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", DEMO_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/accounts/two-factor/verify/**")  # the second factor, its page under the CSP too
        page.fill("#id_code", current_totp_code(user))
        page.click("button[type=submit]")
        page.wait_for_load_state()

    sign_in(world.pathologist)
    for url in (f"/cases/{case.pk}/review/", "/review/", "/accounts/security/", "/api/docs/"):
        page.goto(live_server.url + url)
        page.wait_for_load_state("networkidle")
    page.wait_for_selector("#swagger-ui .information-container", timeout=30_000)  # Swagger UI really started
    sign_in(root)
    page.goto(live_server.url + "/admin/accounts/user/")
    page.wait_for_load_state("networkidle")
    page.goto(live_server.url + "/admin/accounts/user/add/")
    page.wait_for_load_state("networkidle")
    assert violations == []

"""Two-factor sign-in (django-otp TOTP + recovery codes): required for pathologists, lab admins and
superusers, optional for clinicians; API tokens only after the second factor."""

import base64
import re
import time

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from tests.api.conftest import assert_error
from tests.conftest import DEMO_PASSWORD, current_totp_code


def _password_login(client, user, password=DEMO_PASSWORD, next_url=None):
    url = "/accounts/login/" + (f"?next={next_url}" if next_url else "")
    return client.post(url, {"username": user.username, "password": password})


def _code_from_secret(secret_text):
    key = base64.b32decode(secret_text.replace(" ", ""))
    return f"{totp(key):06d}"


def test_a_pathologist_without_a_second_factor_enrols_at_sign_in(world):
    client = Client()
    response = _password_login(client, world.pathologist)
    assert response.status_code == 302
    assert client.get("/review/")["Location"].startswith("/accounts/two-factor/setup/")
    page = client.get("/accounts/two-factor/setup/?next=/review/")
    html = page.content.decode()
    assert 'src="data:image/svg+xml;base64,' in html  # the QR code, allowed by the CSP's img-src
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', html).group(1)
    wrong = client.post("/accounts/two-factor/setup/", {"code": "000000", "next": "/review/"})
    assert b"That code is not right" in wrong.content
    time.sleep(1.1)  # django-otp makes a device wait 1 s after a wrong code (then 2 s, 4 s...)
    done = client.post("/accounts/two-factor/setup/", {"code": _code_from_secret(secret), "next": "/review/"})
    codes = re.findall(r"<li>([a-z2-7]{8})</li>", done.content.decode())
    assert len(codes) == 10
    assert client.get("/review/").status_code == 200  # this session is verified now
    assert TOTPDevice.objects.get(user=world.pathologist).confirmed
    event = AuditEvent.objects.get(action="2fa_enrolled")
    assert event.actor == world.pathologist and event.detail["device"] == "totp"


def test_an_enrolled_pathologist_types_a_code_after_the_password(world):
    code = current_totp_code(world.pathologist)
    client = Client()
    _password_login(client, world.pathologist)
    response = client.get("/review/")
    assert response["Location"] == "/accounts/two-factor/verify/?next=%2Freview%2F"
    assert client.get(f"/cases/{world.submit_case().pk}/review/").status_code == 302  # nothing else
    wrong = client.post("/accounts/two-factor/verify/", {"code": "123456", "next": "/review/"})
    assert b"That code is not right" in wrong.content
    assert AuditEvent.objects.filter(
        action="login_failed", actor=world.pathologist, detail__step="second_factor"
    ).exists()
    time.sleep(1.1)  # django-otp's wait after a wrong code
    assert client.post("/accounts/two-factor/verify/", {"code": code, "next": "/review/"})["Location"] == "/review/"
    assert client.get("/review/").status_code == 200


def test_a_next_that_is_not_a_path_leads_home_after_the_code(world):
    code = current_totp_code(world.pathologist)  # enrolled
    client = Client()
    _password_login(client, world.pathologist)
    prompt = client.get("/accounts/two-factor/verify/", {"next": "0"})
    assert prompt.status_code == 200
    response = client.post("/accounts/two-factor/verify/", {"code": code, "next": "0"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_a_recovery_code_signs_in_once(world):
    enrolled = Client()
    enrolled.force_login(world.pathologist)
    page = enrolled.post("/accounts/security/", {"action": "new-recovery-codes"})
    codes = re.findall(r"<li>([a-z2-7]{8})</li>", page.content.decode())
    assert len(codes) == 10
    for expected in ("/review/", None):
        client = Client()
        _password_login(client, world.pathologist)
        response = client.post("/accounts/two-factor/verify/", {"code": codes[0], "next": "/review/"})
        if expected:
            assert response["Location"] == expected
        else:
            assert response.status_code == 200 and b"That code is not right" in response.content
    used = AuditEvent.objects.get(action="recovery_code_used")
    assert used.detail["codes_left"] == 9


def test_clinicians_sign_in_with_the_password_alone_and_may_enrol(world):
    client = Client()
    _password_login(client, world.clinician)
    assert client.get("/cases/").status_code == 200
    page = client.get("/accounts/security/")
    assert b"It is optional for your role" in page.content
    assert client.get("/accounts/two-factor/setup/").status_code == 200


def test_superusers_need_the_second_factor_for_the_admin(world, django_user_model):
    django_user_model.objects.create_superuser("root_admin", "root@example.org", DEMO_PASSWORD)
    client = Client()
    client.post("/admin/login/?next=/admin/", {"username": "root_admin", "password": DEMO_PASSWORD})
    assert client.get("/admin/")["Location"].startswith("/accounts/two-factor/setup/")


def test_an_unverified_session_gets_no_api_answers(world):
    current_totp_code(world.pathologist)
    client = Client()
    _password_login(client, world.pathologist)
    response = client.get("/api/review-queue/")
    assert response.status_code == 403 and response.json()["error"]["code"] == "second_factor_required"


def test_api_tokens_need_the_second_factor_for_those_roles(world, client_for):
    anonymous = client_for(None)
    credentials = {"username": world.lab_admin.username, "password": DEMO_PASSWORD}
    error = assert_error(anonymous.post("/api/auth/token/", credentials, format="json"), 400, "invalid")
    assert "set it up in the portal" in error["details"]["otp_code"][0]
    code = current_totp_code(world.lab_admin)
    assert_error(anonymous.post("/api/auth/token/", {**credentials, "otp_code": "999999"}, format="json"), 400)
    time.sleep(1.1)  # django-otp's wait after a wrong code
    assert anonymous.post("/api/auth/token/", {**credentials, "otp_code": code}, format="json").status_code == 200
    # Clinicians: the password is enough.
    clinician = {"username": world.clinician.username, "password": DEMO_PASSWORD}
    assert anonymous.post("/api/auth/token/", clinician, format="json").status_code == 200


def test_a_lab_admin_resets_a_lost_second_factor(world):
    current_totp_code(world.pathologist)
    StaticDevice.objects.create(user=world.pathologist, name="Recovery codes", confirmed=True)
    other_admin_client = Client()
    other_admin_client.force_login(world.site_admin)  # an admin of another organisation
    assert other_admin_client.post(f"/accounts/users/{world.pathologist.pk}/reset-two-factor/").status_code == 404
    admin = Client()
    admin.force_login(world.lab_admin)
    response = admin.post(f"/accounts/users/{world.pathologist.pk}/reset-two-factor/")
    assert response["Location"] == f"/accounts/users/{world.pathologist.pk}/"
    assert not TOTPDevice.objects.filter(user=world.pathologist).exists()
    assert not StaticDevice.objects.filter(user=world.pathologist).exists()
    event = AuditEvent.objects.get(action="2fa_reset")
    assert event.actor == world.pathologist and event.detail["reset_by"] == world.lab_admin.username
    client = Client()
    _password_login(client, world.pathologist)
    assert client.get("/review/")["Location"].startswith("/accounts/two-factor/setup/")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_enrolment_in_a_real_browser(live_server, world, browser):
    page = browser.new_context().new_page()
    page.set_default_timeout(20_000)
    page.goto(live_server.url + "/review/")
    page.fill("#id_username", world.pathologist.username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/accounts/two-factor/setup/**")
    assert page.locator("[data-testid=totp-qr]").evaluate("img => img.naturalWidth") > 0  # the QR code rendered
    page.fill("#id_code", _code_from_secret(page.inner_text("[data-testid=totp-secret]")))
    page.click("button:has-text('Confirm and turn on')")
    assert page.locator("[data-testid=recovery-codes] li").count() == 10
    page.click("text=I have saved them: continue")
    page.wait_for_url("**/review/")
    assert "Review queue" in page.content()

"""Forced password change after an admin sets one, self-service change, and the idle timeout."""

import time

from django.test import Client

from accounts.services import user_create, user_update
from audit.models import AuditEvent
from security.middleware import SessionIdleTimeoutMiddleware
from tests.conftest import DEMO_PASSWORD

TEMPORARY = "temporary-pass-4711"


def _login(client, username, password):
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_a_new_account_changes_its_temporary_password_at_first_sign_in(world):
    user_create(admin=world.site_admin, username="nora_newclin", password=TEMPORARY, role="clinician")
    client = Client()
    _login(client, "nora_newclin", TEMPORARY)
    response = client.get("/cases/")
    assert response["Location"] == "/accounts/password/change/?next=%2Fcases%2F"
    assert client.get("/api/cases/").json()["error"]["code"] == "password_change_required"
    page = client.get("/accounts/password/change/?next=/cases/")
    assert b"set by an administrator" in page.content
    weak = client.post(
        "/accounts/password/change/",
        {
            "old_password": TEMPORARY,
            "new_password1": "12345678901",
            "new_password2": "12345678901",
            "next": "/cases/",
        },
    )
    assert weak.status_code == 200 and b"entirely numeric" in weak.content  # the password rules apply
    done = client.post(
        "/accounts/password/change/",
        {
            "old_password": TEMPORARY,
            "new_password1": "nora-own-choice-9",
            "new_password2": "nora-own-choice-9",
            "next": "/cases/",
        },
    )
    assert done["Location"] == "/cases/"
    assert client.get("/cases/").status_code == 200  # still signed in, free to work
    assert AuditEvent.objects.filter(action="password_changed", actor__username="nora_newclin").exists()


def test_an_admin_reset_forces_a_change_and_is_audited(world):
    user_update(admin=world.site_admin, user=world.clinician, password="reset-by-admin-77")
    event = AuditEvent.objects.get(action="password_reset")
    assert event.actor == world.clinician and event.detail["reset_by"] == world.site_admin.username
    client = Client()
    _login(client, world.clinician.username, "reset-by-admin-77")
    assert client.get("/cases/")["Location"].startswith("/accounts/password/change/")


def test_a_superuser_reset_in_the_admin_forces_a_change(world, django_user_model):
    root = django_user_model.objects.create_superuser("root_admin", "root@example.org", DEMO_PASSWORD)
    admin = Client()
    admin.force_login(root)
    response = admin.post(
        f"/admin/accounts/user/{world.clinician.pk}/password/",
        {
            "password1": "admin-chosen-555",
            "password2": "admin-chosen-555",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:500]
    client = Client()
    _login(client, world.clinician.username, "admin-chosen-555")
    assert client.get("/cases/")["Location"].startswith("/accounts/password/change/")


def test_self_service_password_change(world):
    client = Client()
    _login(client, world.clinician.username, DEMO_PASSWORD)
    assert b"Change your password" in client.get("/accounts/security/").content
    wrong = client.post(
        "/accounts/password/change/",
        {
            "old_password": "not-it",
            "new_password1": "brand-new-pass-1",
            "new_password2": "brand-new-pass-1",
        },
    )
    assert wrong.status_code == 200 and b"incorrectly" in wrong.content
    done = client.post(
        "/accounts/password/change/",
        {
            "old_password": DEMO_PASSWORD,
            "new_password1": "brand-new-pass-1",
            "new_password2": "brand-new-pass-1",
        },
    )
    assert done["Location"] == "/accounts/security/"
    world.clinician.refresh_from_db()
    assert world.clinician.check_password("brand-new-pass-1")


def test_an_idle_session_is_signed_out(world, settings):
    settings.SESSION_IDLE_TIMEOUT_S = 30 * 60
    client = Client()
    _login(client, world.clinician.username, DEMO_PASSWORD)
    assert client.get("/cases/").status_code == 200
    session = client.session
    session[SessionIdleTimeoutMiddleware.KEY] = int(time.time()) - 29 * 60
    session.save()
    # A background refresh does not count as activity...
    assert client.get("/cases/", HTTP_X_TELEDIAG_BACKGROUND="1").status_code == 200
    session = client.session
    session[SessionIdleTimeoutMiddleware.KEY] -= 2 * 60  # ...so 31 minutes later the session ends.
    session.save()
    response = client.get("/cases/")
    assert response["Location"] == "/accounts/login/?next=%2Fcases%2F"
    assert "_auth_user_id" not in client.session
    assert client.get("/cases/").status_code == 302


def test_an_idle_api_session_gets_a_401(world, settings):
    client = Client()
    _login(client, world.clinician.username, DEMO_PASSWORD)
    client.get("/cases/")
    session = client.session
    session[SessionIdleTimeoutMiddleware.KEY] = int(time.time()) - settings.SESSION_IDLE_TIMEOUT_S - 5
    session.save()
    response = client.get("/api/cases/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "session_expired"

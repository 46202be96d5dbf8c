"""Login lockout (django-axes) for the portal, the admin and the API token, and its audit trail."""

from django.test import Client

from audit.models import AuditEvent
from tests.api.conftest import assert_error
from tests.conftest import DEMO_PASSWORD


def _portal_login(client, username, password, **headers):
    return client.post("/accounts/login/", {"username": username, "password": password}, **headers)


def test_portal_login_locks_after_five_failures_even_with_the_right_password(world):
    client = Client()
    for _ in range(4):
        assert _portal_login(client, world.pathologist.username, "wrong-password").status_code == 200
    response = _portal_login(client, world.pathologist.username, "wrong-password")
    assert response.status_code == 429
    assert b"Sign-in locked" in response.content
    response = _portal_login(client, world.pathologist.username, DEMO_PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_lockout_is_per_account_and_address(world, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client = Client()
    for _ in range(5):
        _portal_login(client, world.pathologist.username, "nope", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert (
        _portal_login(
            client, world.pathologist.username, DEMO_PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7"
        ).status_code
        == 429
    )
    # The pathologist at their own workstation still signs in; so does a colleague at the attacker's address.
    assert (
        _portal_login(Client(), world.pathologist.username, DEMO_PASSWORD, HTTP_X_FORWARDED_FOR="10.1.1.1").status_code
        == 302
    )
    assert (
        _portal_login(
            Client(), world.pathologist2.username, DEMO_PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7"
        ).status_code
        == 302
    )
    # A client cannot escape its lockout by inventing a forwarded address: only the proxy's entry counts.
    response = _portal_login(
        client, world.pathologist.username, DEMO_PASSWORD, HTTP_X_FORWARDED_FOR="1.1.1.1, 198.51.100.7"
    )
    assert response.status_code == 429


def test_admin_login_is_locked_too(db, django_user_model):
    django_user_model.objects.create_superuser("root_admin", "root@example.org", DEMO_PASSWORD)
    client = Client()
    for _ in range(5):
        client.post("/admin/login/", {"username": "root_admin", "password": "wrong"})
    response = client.post("/admin/login/?next=/admin/", {"username": "root_admin", "password": DEMO_PASSWORD})
    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302  # still not signed in


def test_api_token_locks_and_says_so(world, client_for):
    client = client_for(None)
    for _ in range(4):
        assert_error(
            client.post("/api/auth/token/", {"username": world.clinician.username, "password": "x"}, format="json"), 400
        )
    assert_error(
        client.post("/api/auth/token/", {"username": world.clinician.username, "password": "x"}, format="json"), 429
    )
    error = assert_error(
        client.post(
            "/api/auth/token/", {"username": world.clinician.username, "password": DEMO_PASSWORD}, format="json"
        ),
        429,
        "locked_out",
    )
    assert "locked" in error["message"]


def test_lockout_store_is_the_database(world):
    from axes.models import AccessAttempt

    for _ in range(2):
        _portal_login(Client(), world.clinician.username, "wrong")
    attempt = AccessAttempt.objects.get(username=world.clinician.username)
    assert attempt.failures_since_start == 2 and attempt.ip_address == "127.0.0.1"


def test_sign_ins_failures_and_lockouts_are_audited(world):
    client = Client()
    assert _portal_login(client, world.clinician.username, DEMO_PASSWORD).status_code == 302
    client.post("/accounts/logout/")
    for _ in range(5):
        _portal_login(Client(), world.clinician.username, "wrong")
    _portal_login(Client(), "no_such_user", "wrong")
    events = AuditEvent.objects.filter(case=None).order_by("pk")
    actions = [event.action for event in events]
    assert actions[:2] == ["logged_in", "logged_out"]
    assert actions.count("login_failed") == 6
    assert "locked_out" in actions
    locked = events.get(action="locked_out")
    assert locked.actor == world.clinician and locked.actor_organisation == world.site
    assert locked.ip_address == "127.0.0.1" and locked.detail["channel"] == "portal"
    unknown = events.filter(action="login_failed").last()
    assert unknown.actor is None and unknown.detail["username"] == "no_such_user"
    # The clinician's lab admin reads them in the organisation's audit trail.
    admin = Client()
    admin.force_login(world.site_admin)
    page = admin.get("/audit/?action=locked_out")
    assert page.status_code == 200 and b"Locked out" in page.content


def test_api_tokens_issued_are_audited(world, client_for):
    response = client_for(None).post(
        "/api/auth/token/", {"username": world.clinician.username, "password": DEMO_PASSWORD}, format="json"
    )
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="token_issued")
    assert event.actor == world.clinician and event.detail["channel"] == "api"

"""The client address behind trusted proxies: for the audit trail and for the token throttle."""

import pytest
from django.core.cache import caches
from django.test import RequestFactory

from audit.models import AuditEvent
from core.client_ip import client_ip
from tests.api.conftest import assert_error


@pytest.mark.parametrize(
    "proxies, forwarded, expected",
    [
        (0, "203.0.113.9", "10.0.0.1"),  # no proxy trusted: the header is the client's own words
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "1.2.3.4, 203.0.113.9", "203.0.113.9"),  # the client prepended a lie; the proxy appended the truth
        (2, "1.2.3.4, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
        (1, "not-an-ip", "10.0.0.1"),
        (1, "1.2.3.4, <script>", "10.0.0.1"),
        (1, "", "10.0.0.1"),
        (3, "203.0.113.9", "10.0.0.1"),  # fewer addresses than proxies: a misconfiguration, not the client
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip_trusts_only_the_configured_proxies(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="10.0.0.1")
    assert client_ip(request) == expected


def test_a_non_ip_forwarded_for_never_breaks_an_audited_request(world, client_for, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client = client_for(world.clinician)
    response = client.get(f"/api/patients/{world.patient.pk}/", HTTP_X_FORWARDED_FOR="unknown, garbage")
    assert response.status_code == 200, response.content
    response = client.get(f"/api/patients/{world.patient.pk}/", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.23")
    assert response.status_code == 200
    addresses = list(AuditEvent.objects.filter(action="viewed").order_by("pk").values_list("ip_address", flat=True))
    assert addresses == ["127.0.0.1", "198.51.100.23"]


def test_the_token_throttle_ignores_client_set_forwarded_for(db, client_for, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    client = client_for(None)
    statuses = [
        client.post(
            "/api/auth/token/",
            {"username": f"nobody{i}", "password": "wrong"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        ).status_code
        for i in range(25)
    ]
    assert statuses[:20] == [400] * 20
    assert statuses[20:] == [429] * 5


def test_behind_one_proxy_the_throttle_keys_on_the_address_the_proxy_saw(db, client_for, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client = client_for(None)
    for i in range(20):
        client.post(
            "/api/auth/token/",
            {"username": "x", "password": "y"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"{i}.{i}.{i}.{i}, 203.0.113.5",
        )
    assert_error(
        client.post(
            "/api/auth/token/",
            {"username": "x", "password": "y"},
            format="json",
            HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.5",
        ),
        429,
        "throttled",
    )
    # Another client behind the same proxy is not affected.
    response = client.post(
        "/api/auth/token/", {"username": "x", "password": "y"}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.6"
    )
    assert response.status_code == 400


def test_throttle_counters_live_in_a_cache_every_process_shares(db, client_for, settings):
    backend = settings.CACHES["default"]["BACKEND"]
    assert backend in ("django.core.cache.backends.db.DatabaseCache", "django.core.cache.backends.redis.RedisCache")
    client_for(None).post("/api/auth/token/", {"username": "x", "password": "y"}, format="json")
    # A new connection to the cache, as another web process would open, sees the counter.
    other_process_view = caches.create_connection("default")
    assert other_process_view.get("throttle_auth-token_127.0.0.1")

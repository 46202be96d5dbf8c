"""Electronic signature: signing and amending need the password or a current TOTP code again."""

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from cases.models import Case, Review
from tests.api.conftest import assert_error
from tests.conftest import DEMO_PASSWORD


@pytest.fixture
def case(world):
    return world.submit_case()


def _sign(client, case, **payload):
    return client.post(f"/api/cases/{case.pk}/sign/", {"diagnosis": "pre_b", **payload}, format="json")


def _current_code(device):
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


def test_signing_without_the_password_is_refused(world, case, client_for):
    error = assert_error(_sign(client_for(world.pathologist), case), 400, "signature_invalid")
    assert set(error["details"]) == {"password"}
    case.refresh_from_db()
    assert case.status != Case.Status.SIGNED and not Review.objects.exists()


def test_a_wrong_password_is_refused_and_counts_as_a_failed_sign_in(world, case, client_for):
    error = assert_error(
        _sign(client_for(world.pathologist), case, password="not-my-password"), 400, "signature_invalid"
    )
    assert error["details"] == {"password": ["Wrong password."]}
    assert not Review.objects.exists()
    failed = AuditEvent.objects.get(action="login_failed")
    assert failed.actor == world.pathologist and failed.detail["channel"] == "api"


def test_the_signature_records_the_password_method(world, case, client_for):
    body = _sign(client_for(world.pathologist), case, password=DEMO_PASSWORD).json()
    assert body["status"] == "signed" and body["diagnoses"][0]["signature_method"] == "password"
    assert Review.objects.get().signature_method == "password"
    assert AuditEvent.objects.get(action="signed").detail["signature_method"] == "password"


def test_a_current_authenticator_code_signs_and_amends(world, case, client_for):
    device = TOTPDevice.objects.create(user=world.pathologist, name="phone", confirmed=True)
    client = client_for(world.pathologist)
    assert _sign(client, case, otp_code=_current_code(device)).status_code == 200
    # The same code cannot be used twice (replay); the next time step's code amends.
    replay = client.post(
        f"/api/cases/{case.pk}/amend/",
        {"diagnosis": "pro_b", "reason": "CD10-", "otp_code": _current_code(device)},
        format="json",
    )
    assert_error(replay, 400, "signature_invalid")
    device.refresh_from_db()
    device.last_t -= 1  # as if the code had been used in the previous time step
    device.throttle_reset(commit=False)  # and without the wait django-otp imposes after a failure
    device.save()
    amended = client.post(
        f"/api/cases/{case.pk}/amend/",
        {"diagnosis": "pro_b", "reason": "CD10-", "otp_code": _current_code(device)},
        format="json",
    )
    assert amended.status_code == 200, amended.content
    assert list(Review.objects.order_by("pk").values_list("signature_method", flat=True)) == ["totp", "totp"]


def test_recovery_codes_do_not_sign(world, case, client_for):
    static = StaticDevice.objects.create(user=world.pathologist, name="recovery", confirmed=True)
    static.token_set.create(token="recovery1")
    assert_error(_sign(client_for(world.pathologist), case, otp_code="recovery1"), 400, "signature_invalid")
    assert static.token_set.count() == 1  # not consumed


def test_amending_requires_the_signature_too(world, case, client_for):
    client = client_for(world.pathologist)
    _sign(client, case, password=DEMO_PASSWORD)
    response = client.post(
        f"/api/cases/{case.pk}/amend/", {"diagnosis": "pro_b", "reason": "Second opinion."}, format="json"
    )
    assert_error(response, 400, "signature_invalid")
    assert Review.objects.count() == 1


def test_the_portal_asks_for_the_password_to_sign(world, case):
    client = Client()
    client.force_login(world.pathologist)
    url = reverse("case-review", args=[case.pk])
    page = client.get(url)
    assert b'name="sign-password"' in page.content and b'autocomplete="current-password"' in page.content
    refused = client.post(url, {"action": "sign", "sign-diagnosis": "pre_b", "sign-password": "wrong-one"})
    assert refused.status_code == 200 and b"Wrong password." in refused.content
    assert not Review.objects.exists()
    signed = client.post(url, {"action": "sign", "sign-diagnosis": "pre_b", "sign-password": DEMO_PASSWORD})
    assert signed.status_code == 302  # on to the next case, or the queue
    assert b"e-signature: password re-entered" in client.get(url).content
    assert Review.objects.get().signature_method == "password"

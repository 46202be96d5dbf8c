"""Requests over Django's size limits get a clear 4xx, never a 500 (API and portal)."""

import io

from django.test import Client
from PIL import Image

from tests.api.conftest import assert_error


def _png():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def _multipart(fields, files):
    boundary = "telediagboundary"
    parts = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for index, content in enumerate(files):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="s{index}.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_too_many_files_to_the_api_is_a_400_not_a_500(world, client_for, settings):
    body, content_type = _multipart(
        [("patient", world.patient.pk)], [_png()] * (settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)
    )
    response = client_for(world.clinician).generic("POST", "/api/cases/", body, content_type=content_type)
    error = assert_error(response, 400, "too_many_files")
    assert str(settings.DATA_UPLOAD_MAX_NUMBER_FILES) in error["message"]


def test_too_many_fields_to_the_api_is_a_400(world, client_for, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    body, content_type = _multipart([(f"f{i}", "x") for i in range(10)], [_png()])
    response = client_for(world.clinician).generic("POST", "/api/cases/", body, content_type=content_type)
    assert_error(response, 400, "too_many_fields")


def test_a_huge_password_without_logging_in_is_a_413(db, client_for):
    big = "x" * (3 * 1024 * 1024)
    for content_type, payload in (
        ("application/json", '{"username": "a", "password": "%s"}' % big),
        ("application/x-www-form-urlencoded", f"username=a&password={big}"),
    ):
        response = client_for(None).generic("POST", "/api/auth/token/", payload, content_type=content_type)
        assert_error(response, 413, "request_too_large")


def test_portal_forms_answer_4xx_to_oversized_requests(world, settings):
    client = Client()
    client.force_login(world.clinician)
    body, content_type = _multipart(
        [("patient", world.patient.pk)], [_png()] * (settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)
    )
    response = client.generic("POST", "/cases/new/", body, content_type=content_type)
    assert response.status_code == 400
    big = "x" * (3 * 1024 * 1024)
    response = Client().post(
        "/accounts/login/", f"username=a&password={big}", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in (400, 413)
    assert b"Traceback" not in response.content
    assert b"Nothing was saved" in response.content

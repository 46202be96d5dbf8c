"""Content-Security-Policy, no-store caching and the API docs behind a login."""

import pytest
from django.test import Client

from tests.conftest import DEMO_PASSWORD


def _signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_every_page_has_a_strict_content_security_policy(world):
    response = _signed_in(world.clinician).get("/cases/")
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


@pytest.mark.parametrize(
    "who, url",
    [
        ("clinician", "/cases/"),
        ("clinician", "/patients/"),
        ("clinician", "/cases/new/"),
        ("pathologist", "/review/"),
        ("lab_admin", "/accounts/users/"),
        ("lab_admin", "/audit/"),
        ("clinician", "/api/docs/"),
    ],
)
def test_no_template_has_inline_scripts_or_styles(world, who, url):
    content = _signed_in(getattr(world, who)).get(url).content.decode()
    assert "<script>" not in content and "<style" not in content and " style=" not in content
    assert " onclick=" not in content and " onload=" not in content and " onsubmit=" not in content


def test_pages_api_answers_and_images_are_never_stored(world, client_for):
    case = world.submit_case()
    smear = case.smears.get()
    clinician = _signed_in(world.clinician)
    answers = [
        clinician.get(f"/cases/{case.pk}/"),
        clinician.get(f"/smears/{smear.pk}/image/"),
        clinician.get("/accounts/login/"),
        client_for(world.clinician).get(f"/api/cases/{case.pk}/"),
        client_for(world.clinician).get(f"/api/smears/{smear.pk}/image/"),
        client_for(None).get("/api/cases/"),
    ]
    for response in answers:
        assert "no-store" in response["Cache-Control"], (response.wsgi_request.path, response["Cache-Control"])
        assert "max-age=3600" not in response["Cache-Control"]


def test_static_files_stay_cacheable(world, live_server):
    import urllib.request

    with urllib.request.urlopen(live_server.url + "/static/css/telediag.css") as answer:
        assert "no-store" not in (answer.headers.get("Cache-Control") or "")


def test_api_docs_and_schema_need_a_login(world, client_for):
    anonymous = Client()
    response = anonymous.get("/api/docs/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client_for(None).get("/api/schema/").status_code == 401
    assert client_for(world.clinician).get("/api/schema/").status_code == 200
    token = (
        client_for(None)
        .post("/api/auth/token/", {"username": world.clinician.username, "password": DEMO_PASSWORD}, format="json")
        .json()["token"]
    )
    scripted = client_for(None)
    scripted.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert scripted.get("/api/schema/").status_code == 200
    docs = _signed_in(world.clinician).get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    assert b"cdn.jsdelivr" not in docs.content  # served from here (drf-spectacular-sidecar)

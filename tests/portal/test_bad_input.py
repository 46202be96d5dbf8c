"""Bad input on every portal page answers with a page, a redirect or a 4xx: never a server error.

The pages are taken from the URL configuration, so a new page is covered once it exists. Each is
requested as several roles, with an object id of the world and ids that exist nowhere, with query
parameters and form fields that no form sends (wrong types, out-of-range numbers and dates, huge
and control-character strings, a "next" that is not a path, a file that is not an image).
"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver

BAD_QUERIES = [
    {"page": "-1", "q": "\x00", "status": "nonsense"},
    {"page": "9" * 30, "priority": "[]", "site": "abc", "laboratory": "-5"},
    {"q": "x" * 5000, "date_from": "2026-13-45", "date_to": "yesterday", "mine": "maybe"},
    {"cursor": "%%%", "format": "xml", "action": "é漢字", "actor": "1.5", "case": "99999999999999999999"},
    {"next": "0", "unread": "2", "flagged": "{}", "model": "' OR 1=1--"},
]
BAD_FORMS = [
    {},
    {"next": "0", "id": "abc", "ids": "x", "action": "é漢字"},
    {"diagnosis": "nonsense", "password": "x" * 5000, "otp_code": "\x00", "reason": "", "assignee": "-1"},
    {"patient": "abc", "priority": "[]", "laboratory": "99999999999999999999", "model_version": "1.5"},
    {"mrn": "\x00", "date_of_birth": "2026-13-45", "sex": "?", "role": "admin", "organisation": "-1", "is_active": "x"},
]
NOT_HERE = ("api/", "admin/", "static/", "media/")
NOT_CALLED = ("accounts/logout/",)  # would end the session the rest of the test uses


def portal_paths():
    """Every portal URL pattern as a path template ("cases/<int:pk>/"), the API and admin aside."""
    found = []

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                found.append(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns, "")
    return [p for p in found if not p.startswith(NOT_HERE) and p not in NOT_CALLED and "<path:" not in p]


@pytest.mark.parametrize("role", ["clinician", "pathologist", "lab_admin", "outsider"])
def test_no_portal_page_fails_on_bad_input(world, login, role):
    case = world.submit_case()
    client = login(getattr(world, role))
    client.raise_request_exception = False  # a server error is an answer to count, not a crash
    templates = portal_paths()
    assert len(templates) >= 30
    failures = []
    for template in templates:
        ids = [case.pk, 2**40] if "<int:pk>" in template else [None]
        for pk in ids:
            path = "/" + (template.replace("<int:pk>", str(pk)) if pk is not None else template)
            answers = [("GET", query, client.get(path, query)) for query in BAD_QUERIES]
            answers += [("POST", form, client.post(path, form)) for form in BAD_FORMS]
            answers.append(
                ("POST", "a file", client.post(path, {"images": SimpleUploadedFile("x.png", b"not an image")}))
            )
            for method, sent, response in answers:
                health_answer = path == "/readyz" and response.status_code == 503  # no model: not ready, by design
                if response.status_code >= 500 and not health_answer:
                    failures.append(f"{method} {path} {str(sent)[:80]} -> {response.status_code}")
    assert failures == [], "\n".join(failures)

"""core.next_url: a form's "next" is followed only to a page of this site."""

import pytest
from django.test import RequestFactory

from core.next_url import local_next_url


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/review/?urgent=on", "/review/?urgent=on"),
        ("/cases/12/", "/cases/12/"),
        ("https://evil.example/", ""),
        ("//evil.example/", ""),
        ("/\\evil.example/", ""),
        ("0", ""),  # redirect() would look "0" up as a URL name and fail
        ("review-queue", ""),
        ("javascript:alert(1)", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_only_paths_of_this_site_are_followed(target, expected):
    request = RequestFactory().post("/notifications/read/")
    assert local_next_url(request, target) == expected


def test_an_absolute_url_of_this_host_is_refused_too():
    # Forms send paths; anything with a scheme or host is not one of ours to follow.
    request = RequestFactory().post("/notifications/read/", HTTP_HOST="testserver")
    assert local_next_url(request, "http://testserver/cases/") == ""

"""Fixtures for the API tests: clients acting as a given user, a submitted case, error-body checks."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.conftest import _user


@pytest.fixture
def client_for():
    """client_for(user) → an APIClient authenticated as user; client_for(None) → anonymous."""

    def make(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def case(world):
    """A routine case of world.patient, submitted by the clinician to the lab."""
    return world.submit_case()


@pytest.fixture
def other_admin(world):
    """A lab admin of other_lab: the right role, an unrelated organisation."""
    return _user("otto_otheradmin", world.other_lab, "lab_admin")


@pytest.fixture(autouse=True)
def _fresh_throttles(request):
    # Throttle counters live in the cache (a database table); each test starts with none.
    if not {"db", "transactional_db"} & set(request.fixturenames):
        yield
        return
    request.getfixturevalue("transactional_db" if "transactional_db" in request.fixturenames else "db")
    cache.clear()
    yield
    cache.clear()


def assert_error(response, status, code=None):
    """The one error body: {"error": {"code", "message", "details"}}; returns the inner object."""
    assert response.status_code == status, (response.status_code, response.content[:2000])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def who(world, name, extra=None):
    """The user called name in world (or in extra), None for "anonymous"."""
    if name == "anonymous":
        return None
    if extra and name in extra:
        return extra[name]
    return getattr(world, name)

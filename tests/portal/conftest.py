"""Fixtures for the portal tests, on top of tests/conftest.py's `world`."""

import pytest

from tests.conftest import smear_upload


@pytest.fixture
def case(world):
    """An unsigned case of world.site, referred to world.lab, with one image."""
    return world.submit_case(files=[smear_upload("first.png")])


@pytest.fixture
def smear(case):
    return case.smears.get()


@pytest.fixture
def signed_case(world, case):
    from cases.services import case_sign

    case_sign(signature_method="password", user=world.pathologist, case=case, diagnosis="pre_b", comment="Blasts 80 %.")
    case.refresh_from_db()
    return case


@pytest.fixture
def login(client):
    """login(user) → the test client signed in as that user (None: anonymous)."""

    def _login(user):
        client.logout()
        if user is not None:
            client.force_login(user)
        return client

    return _login

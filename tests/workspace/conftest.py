"""The portal tests' fixtures (login, case, signed_case) for the workspace tests."""

from tests.portal.conftest import case, login, signed_case, smear  # noqa: F401

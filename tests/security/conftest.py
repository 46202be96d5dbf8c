"""Fixtures of the security tests: the API tests' clients, and a fresh cache per test."""

from tests.api.conftest import _fresh_throttles, client_for  # noqa: F401

"""Fixtures for the plain-Keras training package. Nothing here needs Django or the real data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

import pytest

from .synthetic import write_dataset


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: builds large backbones or spawns a backend subprocess")


@pytest.fixture
def colour_dataset(tmp_path):
    return write_dataset(tmp_path / "data", per_class=12)


@pytest.fixture(autouse=True)
def _media_root():
    """Shadow tests/conftest.py's autouse fixture of the same name, which needs pytest-django's
    ``settings``: these tests never touch Django, so they also run with ``-p no:django``."""
    yield

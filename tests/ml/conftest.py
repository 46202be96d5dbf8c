"""Fixtures for the plain-Keras training package. Nothing here needs Django; only ``real_data_root``
needs the real data."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

import pytest

from tests.real_data import require_real_data

from .synthetic import write_dataset


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: builds large backbones or spawns a backend subprocess")


@pytest.fixture(scope="session")
def real_data_root():
    """The real image folder (TELEDIAG_DATASET_DIR, default ../shared/data/all-leukemia, or its
    original/ sub-folder). Skipped where it is absent, except in CI, which must have it."""
    root = Path(
        os.environ.get("TELEDIAG_DATASET_DIR")
        or Path(__file__).resolve().parents[3] / "shared" / "data" / "all-leukemia"
    )
    return require_real_data(root / "original" if (root / "original").is_dir() else root, "TELEDIAG_DATASET_DIR")


@pytest.fixture
def colour_dataset(tmp_path):
    return write_dataset(tmp_path / "data", per_class=12)


@pytest.fixture(autouse=True)
def _media_root():
    """Shadow tests/conftest.py's autouse fixture of the same name, which needs pytest-django's
    ``settings``: these tests never touch Django, so they also run with ``-p no:django``."""
    yield

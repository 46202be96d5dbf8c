"""Smoke test on a small subset of the real images (settings.DATASET_DIR).

Skipped when the data folder is absent, except in CI (CI=true), where a missing folder fails.
"""

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.real_data import require_real_data
from training import registry
from training.models import ModelVersion

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def real_data(settings):
    """settings.DATASET_DIR itself, or its original/ sub-folder."""
    root = Path(settings.DATASET_DIR)
    return require_real_data(root / "original" if (root / "original").is_dir() else root, "settings.DATASET_DIR")


def test_retrain_evaluate_diagnose_on_real_images(real_data, tmp_path):
    out = io.StringIO()
    call_command(
        "retrain",
        "--data",
        str(real_data),
        "--arch",
        "convnet",
        "--max-per-class",
        "10",
        "--image-size",
        "48",
        "--epochs",
        "1",
        "--split",
        "random",
        "--batch-size",
        "8",
        "--output",
        str(tmp_path / "run"),
        "--promote",
        "best",
        stdout=out,
        verbosity=0,
    )

    version = ModelVersion.objects.get(is_active=True)
    assert version.input_size == 48 and registry.model_path(version).is_file()
    assert version.record.split["max_per_class"] == 10
    assert sum(version.record.split["counts"]["test"].values()) > 0
    assert 0.0 <= version.record.metrics["test"]["accuracy"] <= 1.0
    assert "Architecture" in out.getvalue()

    # The same model through `diagnose`, on two real files.
    files = sorted((real_data / "Pro").iterdir())[:2]
    out = io.StringIO()
    call_command("diagnose", *map(str, files), "--format", "json", stdout=out)
    results = json.loads(out.getvalue())["results"]
    assert [r["error"] for r in results] == [None, None]
    assert all(r["label"] in version.class_names for r in results)

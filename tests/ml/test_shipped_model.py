"""The model shipped in the repository's models/ folder: what a fresh install classifies with.

Guards the artefact against drift: its bytes match the recorded sha256, it fits the size limit, and
on the real data (when present) it still scores what its metadata records on its own test split,
so a change to the preprocessing code that silently degrades the shipped model fails here.
"""

from pathlib import Path

import numpy as np
import pytest

from ml import artifacts
from ml.classes import CLASS_NAMES
from ml.pipeline import SMEAR_CHECK_SIZE

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
MAX_BYTES = 15 * 1024 * 1024  # the shipping limit (issue 5)
# Same weights, same images: only float rounding across CPUs/library versions may move a prediction.
ACCURACY_TOLERANCE = 0.006


def shipped_folders():
    return sorted(path.parent for path in MODELS_DIR.glob("*/metadata.json"))


def test_one_default_model_is_shipped():
    assert len(shipped_folders()) == 1, f"expected exactly one shipped model folder under {MODELS_DIR}"


@pytest.fixture(scope="module", params=shipped_folders(), ids=lambda path: path.name)
def shipped(request):
    folder = request.param
    metadata = artifacts.read_json(folder / "metadata.json")
    model_path = folder / metadata["model_file"]
    model = artifacts.load_model_verified(model_path, metadata["sha256"])
    return folder, metadata, model_path, model


def test_shipped_model_matches_its_metadata(shipped):
    _, metadata, model_path, model = shipped
    assert model_path.stat().st_size <= MAX_BYTES
    assert metadata["class_names"] == list(CLASS_NAMES)
    size = int(metadata["input_size"])
    assert tuple(model.inputs[0].shape[1:]) == (size, size, 3)
    assert model.outputs[0].shape[-1] == len(CLASS_NAMES)
    assert metadata["split"]["splits"]["test"], "the shipped model must record its test split"
    assert metadata["smear_check"]["image_size"] == SMEAR_CHECK_SIZE  # the size serving checks at


@pytest.mark.slow
def test_shipped_model_scores_its_recorded_test_accuracy(shipped, real_data_root):
    from ml.dataset import load_arrays, scan_dataset
    from ml.evaluate import metrics_from_probabilities, predict_probabilities
    from ml.splits import from_record

    _, metadata, _, model = shipped
    split = from_record(metadata["split"], scan_dataset(real_data_root, require_all_classes=False))
    x_test, y_test = load_arrays(split.test, int(metadata["input_size"]))
    metrics = metrics_from_probabilities(predict_probabilities(model, x_test), y_test, CLASS_NAMES)

    recorded = metadata["metrics"]["test"]
    assert metrics["n"] == recorded["n"]
    assert metrics["accuracy"] == pytest.approx(recorded["accuracy"], abs=ACCURACY_TOLERANCE)
    assert metrics["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=2 * ACCURACY_TOLERANCE)
    # Far above chance and above every class's share: the weights are trained, not a fresh model.
    assert metrics["accuracy"] > 0.9 > np.bincount(y_test).max() / len(y_test)

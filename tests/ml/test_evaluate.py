import math

import numpy as np
import pytest

from ml.evaluate import (
    expected_calibration_error,
    flip_views,
    format_comparison_table,
    metrics_from_probabilities,
    predict_probabilities,
    predict_with_flips,
)

NAMES = ("a", "b", "c", "d")
PROBS = np.array(
    [
        [0.90, 0.05, 0.05, 0.00],  # true a, predicted a
        [0.60, 0.40, 0.00, 0.00],  # true b, predicted a
        [0.20, 0.70, 0.10, 0.00],  # true b, predicted b
        [0.10, 0.10, 0.80, 0.00],  # true c, predicted c
        [0.25, 0.25, 0.10, 0.40],  # true d, predicted d
        [0.10, 0.10, 0.50, 0.30],  # true d, predicted c
    ]
)
Y = np.array([0, 1, 1, 2, 3, 3])


def test_hand_computed_metrics():
    m = metrics_from_probabilities(PROBS, Y, NAMES)
    assert m["confusion_matrix"] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert m["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["d"]["precision"] == 1.0 and m["per_class"]["d"]["recall"] == 0.5
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["macro_precision"] == pytest.approx(0.75) and m["macro_recall"] == pytest.approx(0.75)
    expected_loss = -np.mean(np.log([0.9, 0.4, 0.7, 0.8, 0.4, 0.3]))
    assert m["loss"] == pytest.approx(expected_loss)
    # Six confidences in six different bins: ECE = mean |correct - confidence|.
    assert m["ece"] == pytest.approx((0.1 + 0.6 + 0.3 + 0.2 + 0.6 + 0.5) / 6)
    assert m["n"] == 6 and m["class_names"] == list(NAMES)


def test_ece_bins_average_within_a_bin():
    probs = np.array([[0.55, 0.45], [0.55, 0.45], [0.95, 0.05], [0.95, 0.05]])
    y = np.array([0, 1, 0, 0])
    # Bin of 0.55: accuracy 0.5, confidence 0.55 -> 0.05; bin of 0.95: 1.0 vs 0.95 -> 0.05.
    assert expected_calibration_error(probs, y) == pytest.approx(0.05)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_zero_division_and_zero_probability():
    probs = np.array([[1.0, 0.0, 0.0, 0.0]] * 3)
    m = metrics_from_probabilities(probs, np.array([0, 1, 1]), NAMES)
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_class"]["c"]["support"] == 0
    assert math.isfinite(m["loss"]) and m["loss"] == pytest.approx(-(2 / 3) * np.log(1e-7), rel=1e-6)


def test_shape_is_checked():
    with pytest.raises(ValueError):
        metrics_from_probabilities(PROBS[:, :3], Y, NAMES)


def test_comparison_table_from_results_and_flat_rows():
    result = {
        "architecture": "convnet",
        "params": 273604,
        "epochs_run": 12,
        "training_seconds": 754.2,
        "metrics": {"test": {"accuracy": 0.9123, "macro_f1": 0.9, "loss": 0.25, "ece": 0.031}},
    }
    flat = {
        "architecture": "mobilenetv2",
        "accuracy": 0.5,
        "macro_f1": None,
        "loss": 1.0,
        "ece": 0.2,
        "params": 2263108,
        "epochs": 3,
        "time": 12.0,
    }
    table = format_comparison_table([result, flat])
    lines = table.splitlines()
    assert lines[0].split() == ["Architecture", "Accuracy", "Macro-F1", "Loss", "ECE", "Params", "Epochs", "Time"]
    assert "convnet" in lines[2] and "91.23%" in lines[2] and "273,604" in lines[2] and "12m34s" in lines[2]
    assert "mobilenetv2" in lines[3] and " - " in lines[3] and "12.0s" in lines[3]


class _ShapeRecordingModel:
    """Stands in for keras.Model.predict: records the shapes it is given, answers per row."""

    def __init__(self):
        self.shapes = []

    def predict(self, x, batch_size, verbose=0):
        self.shapes.append(x.shape)
        total = x.reshape(len(x), -1).sum(axis=1, dtype=np.float64)
        return np.stack([total, -total], axis=1)


@pytest.mark.parametrize("n, fed", [(70, 96), (64, 64), (20, 20), (1, 1)])
def test_predictions_of_a_set_over_one_batch_run_in_whole_batches(n, fed):
    model = _ShapeRecordingModel()
    x = np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2, 1)
    probabilities = predict_probabilities(model, x, batch_size=32)
    assert model.shapes == [(fed, 2, 2, 1)]
    np.testing.assert_array_equal(probabilities[:, 0], x.reshape(n, -1).sum(axis=1))  # padding dropped
    assert probabilities.shape == (n, 2) and probabilities.dtype == np.float64


class _CornerModel:
    """Answers from each image's top-left pixel, so every flip gives another answer."""

    def predict(self, x, batch_size, verbose=0):
        corner = x[:, 0, 0, 0].astype(np.float64) / 10.0
        return np.stack([corner, 1.0 - corner], axis=1)


def test_flip_predictions_average_the_four_views():
    x = np.array([[[1, 2], [3, 4]]], dtype=np.float32)[..., None]  # corners 1, 2, 3, 4 under the flips
    assert [view[0, 0, 0, 0] for view in flip_views(x)] == [1, 2, 3, 4]
    np.testing.assert_allclose(predict_with_flips(_CornerModel(), x), [[0.25, 0.75]])

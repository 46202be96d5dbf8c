"""ml.predictions: ensembles measured from runs' saved predictions."""

import json

import numpy as np
import pytest

from ml.predictions import main, mean_prediction_metrics

CLASSES = ["benign", "early_pre_b", "pre_b", "pro_b"]


def _run(probabilities, labels, files=None):
    files = files or [f"Benign/WBC-{i:03d}.jpg" for i in range(len(labels))]
    part = {"files": files, "labels": labels, "probabilities": probabilities}
    return {"class_names": CLASSES, "val": part, "test": part}


# Two members on three images (labels 0, 1, 2), each wrong on one image the other gets right.
A = _run([[0.9, 0.1, 0, 0], [0.6, 0.4, 0, 0], [0.1, 0.1, 0.45, 0.35]], [0, 1, 2])
B = _run([[0.4, 0.6, 0, 0], [0.0, 1.0, 0, 0], [0.1, 0.1, 0.4, 0.4]], [0, 1, 2])


def test_the_mean_of_the_members_probabilities_is_scored():
    metrics = mean_prediction_metrics([A, B])
    # Means: [0.65, 0.35, ..] -> 0, [0.3, 0.7, ..] -> 1, [.., 0.425, 0.375] -> 2: all right, although
    # A alone misses image 1 (0.6 on benign) and B alone misses image 0 (0.6 on early).
    assert metrics["test"]["accuracy"] == metrics["val"]["accuracy"] == 1.0
    assert mean_prediction_metrics([A])["test"]["accuracy"] == pytest.approx(2 / 3)
    assert mean_prediction_metrics([B])["test"]["accuracy"] == pytest.approx(2 / 3)


def test_members_on_another_split_are_refused():
    other = _run(B["test"]["probabilities"], [0, 1, 2], files=["Pro/x.jpg", "Pro/y.jpg", "Pro/z.jpg"])
    with pytest.raises(ValueError, match="different splits"):
        mean_prediction_metrics([A, other])
    relabelled = _run(B["test"]["probabilities"], [0, 1, 3])
    with pytest.raises(ValueError, match="different splits"):
        mean_prediction_metrics([A, relabelled])


def test_cli_prints_text_or_json_and_refuses_a_file_that_is_not_predictions(tmp_path, capsys):
    for name, run in (("a.json", A), ("b.json", B)):
        (tmp_path / name).write_text(json.dumps(run))
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert "test: accuracy 100.00% (3 images)" in capsys.readouterr().out
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert np.isclose(printed["val"]["accuracy"], 1.0)
    (tmp_path / "metadata.json").write_text(json.dumps({"architecture": "convnet"}))
    assert main([str(tmp_path / "metadata.json")]) == 2
    assert "not a training run's predictions.json" in capsys.readouterr().err

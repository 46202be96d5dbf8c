"""The colour-only baseline: features, the logistic regression and the train/test comparison."""

import json

import numpy as np
import pytest

from ml.colour_baseline import (
    FEATURE_NAMES,
    ColourBaseline,
    ColourClassifier,
    colour_features,
    run_colour_baseline,
)
from ml.robustness import ColourReference

from .test_robustness import NAMES, coloured_set


def test_features_are_channel_means_and_stds():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2] = (100, 10, 50)
    image[2:] = (200, 30, 50)
    features = colour_features(image)
    assert features.shape == (1, 6) and len(FEATURE_NAMES) == 6
    assert features[0].tolist() == [150.0, 20.0, 50.0, 50.0, 10.0, 0.0]


def test_padding_is_excluded_unless_asked():
    content = np.zeros((4, 6, 3), np.uint8)
    content[:, :3] = (180, 120, 200)
    content[:, 3:] = (160, 100, 220)
    padded = np.zeros((6, 6, 3), np.uint8)
    padded[1:5] = content
    assert np.array_equal(colour_features(padded), colour_features(content))
    assert not np.array_equal(colour_features(padded, exclude_padding=False), colour_features(content))


def blobs(n_per_class=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0, 0, 0], [3, 0, 0, 1, 0, 0], [0, 3, 0, 0, 1, 0], [0, 0, 3, 0, 0, 1]], float)
    x = np.concatenate([c + rng.normal(0, 0.5, (n_per_class, 6)) for c in centres]) * 20 + 100
    y = np.repeat(np.arange(4), n_per_class)
    return x, y


@pytest.mark.parametrize("degree", [1, 2])
def test_classifier_fits_separable_blobs_deterministically(degree):
    x, y = blobs()
    model = ColourClassifier(degree=degree).fit(x, y)
    probabilities = model.predict_proba(x)
    assert probabilities.shape == (len(y), 4) and np.allclose(probabilities.sum(axis=1), 1)
    assert (probabilities.argmax(axis=1) == y).mean() >= 0.97
    again = ColourClassifier(degree=degree).fit(x, y)
    assert np.array_equal(again.predict_proba(x), probabilities)
    x_new, y_new = blobs(seed=1)
    assert (model.predict_proba(x_new).argmax(axis=1) == y_new).mean() >= 0.9


def test_classifier_minimises_the_mean_log_loss_plus_l2():
    """At the fitted weights the gradient of mean log-loss + l2/2 |W|^2 (intercept free) is zero:
    ``l2`` means the same whatever the number of training images."""
    x, y = blobs(n_per_class=30, seed=2)
    x = x + np.random.default_rng(3).normal(0, 30, x.shape)  # overlapping classes: a finite optimum
    model = ColourClassifier(degree=1, l2=1e-2).fit(x, y)
    scaler, regression = model.pipeline[0], model.pipeline[-1]
    design = scaler.transform(x)
    residual = model.predict_proba(x) - np.eye(4)[y]
    weight_gradient = residual.T @ design / len(y) + 1e-2 * regression.coef_
    assert np.abs(weight_gradient).max() < 1e-6
    assert np.abs(residual.mean(axis=0)).max() < 1e-6  # the intercept's gradient


def test_classifier_checks_its_arguments_and_keeps_absent_classes():
    x, y = blobs()
    with pytest.raises(RuntimeError):
        ColourClassifier().predict_proba(x)
    with pytest.raises(ValueError):
        ColourClassifier(degree=3).fit(x, y)
    with pytest.raises(ValueError):
        ColourClassifier().fit(x, y[:-1])
    present = y != 2  # class 2 never seen in training: a column of zeros, not a missing column
    probabilities = ColourClassifier().fit(x[present], y[present], num_classes=4).predict_proba(x)
    assert probabilities.shape == (len(y), 4) and not probabilities[:, 2].any()
    assert np.allclose(probabilities.sum(axis=1), 1)


def test_colour_baseline_on_images():
    x, y = coloured_set(per_class=5)
    baseline = ColourBaseline().fit(x, y, num_classes=4)
    assert (baseline.predict(x) == y).all()
    assert baseline.predict_proba(x).shape == (len(y), 4)


def test_run_colour_baseline_reads_the_stain_and_fails_once_colour_is_normalised():
    x_train, y_train = coloured_set(per_class=8)
    x_test, y_test = x_train[1::2, ::-1], y_train[1::2]  # same colours, other pixel arrangement
    result = run_colour_baseline(x_train, y_train, x_test, y_test, NAMES)

    assert result["test"]["accuracy"] == 1.0  # colour alone predicts these classes
    assert result["normalised_test"]["accuracy"] <= 0.5  # ... until the colour is normalised away
    assert result["chance"] == 0.25 and result["n_train"] == len(y_train)
    assert result["best_normalised_accuracy"] == max(
        result["normalised_test"]["accuracy"], result["normalised_train_normalised_test"]["accuracy"]
    )
    assert result["reference"] == ColourReference.fit(x_train).to_dict()  # fitted on the training split
    assert set(result["test"]) == {"n", "accuracy", "macro_f1", "loss", "confusion_matrix"}
    json.dumps(result)


def test_run_colour_baseline_accepts_a_reference_and_is_deterministic():
    x, y = coloured_set(per_class=6)
    reference = ColourReference.fit(x).to_dict()
    first = run_colour_baseline(x, y, x, y, NAMES, reference, degree=1)
    second = run_colour_baseline(x, y, x, y, NAMES, reference, degree=1)
    assert first == second and first["degree"] == 1

"""ml.ensemble: the members' probabilities averaged, whatever input size each member takes."""

import keras
import numpy as np
import pytest

from ml.ensemble import build_ensemble


def _member(size, seed, name):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(size, size, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x), name=name)


def test_members_of_different_sizes_see_the_image_at_their_own_size(tmp_path):
    large, small = _member(32, 1, "large"), _member(16, 2, "small")
    ensemble = build_ensemble([large, small])
    assert tuple(ensemble.inputs[0].shape[1:]) == (32, 32, 3)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    scaled = keras.layers.Resizing(16, 16, interpolation="bilinear", antialias=True)(images)
    expected = (large.predict_on_batch(images) + small.predict_on_batch(scaled)) / 2
    np.testing.assert_allclose(ensemble.predict_on_batch(images), expected, atol=1e-6)
    assert not np.allclose(large.predict_on_batch(images), small.predict_on_batch(scaled), atol=1e-3)

    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict_on_batch(images), expected, atol=1e-6)


def test_members_must_take_square_rgb_images_and_predict_the_same_classes():
    inputs = keras.Input(shape=(32, 24, 3))
    oblong = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="square RGB"):
        build_ensemble([_member(32, 1, "a"), oblong])
    inputs = keras.Input(shape=(32, 32, 3))
    three = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="different numbers of classes"):
        build_ensemble([_member(32, 1, "a"), three])
    with pytest.raises(ValueError, match="at least two"):
        build_ensemble([_member(32, 1, "a")])

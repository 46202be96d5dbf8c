"""ml.site_augmentation: the site layers change images the way their names say, only in training,
and survive save and load."""

import cv2
import keras
import numpy as np
import pytest

from ml import site_augmentation
from ml.augmentation import build_augmentation
from ml.site_augmentation import (
    RandomChannelGain,
    RandomChroma,
    RandomDefocus,
    RandomJpeg,
    RandomResolution,
    RandomSensorNoise,
    build_site_layers,
)


def _smear(batch=4, size=64, seed=0):
    """Pale background with violet 'nuclei' and fine texture, 0..255 float RGB."""
    rng = np.random.default_rng(seed)
    images = np.full((batch, size, size, 3), (232.0, 222.0, 238.0))
    for i in range(batch):
        y, x = rng.integers(8, size - 24, 2)
        images[i, y : y + 16, x : x + 16] = (120.0, 60.0, 150.0)
    return np.clip(images + rng.normal(0, 6, images.shape), 0, 255).astype("float32")


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _chroma(images):
    """Distance of each pixel from the grey axis."""
    return np.linalg.norm(images - images.mean(axis=-1, keepdims=True), axis=-1)


def test_channel_gain_scales_channels_independently_and_clips():
    images = _smear()
    out = _numpy(RandomChannelGain(max_gain=0.12, seed=1)(images))
    ratios = out[:, 40:, 40:].mean(axis=(1, 2)) / images[:, 40:, 40:].mean(axis=(1, 2))
    assert np.all(np.abs(ratios - 1) <= 0.121) and np.ptp(ratios, axis=1).max() > 0.01
    assert out.max() <= 255.0
    assert np.array_equal(_numpy(RandomChannelGain(max_gain=0.0)(images)), images)


def test_chroma_changes_colour_but_not_grey_or_brightness():
    images = _smear()
    out = _numpy(RandomChroma(max_scale=0.4, max_degrees=15, seed=2)(images))
    assert np.abs(_chroma(out) - _chroma(images)).mean() > 0.5
    unclipped = np.all((out > 0) & (out < 255), axis=-1)
    assert unclipped.mean() > 0.5
    assert np.allclose(out.mean(axis=-1)[unclipped], images.mean(axis=-1)[unclipped], atol=0.01)  # brightness kept
    grey = np.full((2, 8, 8, 3), 128.0, "float32")
    assert np.allclose(_numpy(RandomChroma(seed=3)(grey)), grey, atol=1e-3)
    assert np.allclose(_numpy(RandomChroma(max_scale=0.0, max_degrees=0.0)(images)), images, atol=1e-3)


def test_defocus_and_resolution_take_away_fine_detail():
    images = _smear(batch=16)

    def detail(x):
        return np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))

    for layer in (RandomDefocus(sigma=1.5, rate=1.0, seed=4), RandomResolution(factor=0.4, rate=1.0, seed=5)):
        out = _numpy(layer(images))
        assert out.shape == images.shape
        assert np.all(detail(out) <= detail(images) + 1e-3) and detail(out).mean() < 0.8 * detail(images).mean()
    untouched = _numpy(RandomDefocus(rate=0.0, seed=6)(images))
    assert np.allclose(untouched, images)


def test_jpeg_is_close_to_libjpeg_at_the_same_quality():
    images = _smear(batch=3, size=64)
    ours = _numpy(RandomJpeg(min_quality=30, max_quality=30, rate=1.0, seed=7)(images))
    reference = np.stack(
        [
            cv2.imdecode(cv2.imencode(".jpg", image.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 30])[1], 1)
            for image in images[..., ::-1]
        ]
    )[..., ::-1].astype("float32")
    changed, reference_changed = np.abs(ours - images).mean(), np.abs(reference - images).mean()
    assert changed > 1.0 and abs(changed - reference_changed) < 0.5 * reference_changed
    assert np.abs(ours - reference).mean() < changed  # nearer to libjpeg's output than to the original
    assert np.array_equal(_numpy(RandomJpeg(rate=0.0)(images)), images)


def test_jpeg_pads_sizes_that_are_not_multiples_of_16():
    images = _smear(batch=2, size=40)
    assert _numpy(RandomJpeg(rate=1.0, seed=8)(images)).shape == images.shape


def test_noise_has_the_asked_spread():
    images = np.full((8, 32, 32, 3), 128.0, "float32")
    out = _numpy(RandomSensorNoise(max_std=4.0, seed=9)(images))
    spread = (out - images).std(axis=(1, 2, 3))
    assert spread.max() <= 4.5 and spread.mean() > 0.5


def test_site_layers_by_name_in_a_fixed_order_and_unknown_names_refused():
    layers = build_site_layers(["jpeg", "white_balance", "jpeg"], seed=1)
    assert [layer.name for layer in layers] == ["site_white_balance", "site_jpeg"]
    with pytest.raises(ValueError, match="fog"):
        build_site_layers(["fog"])
    assert set(site_augmentation.SITE_AUGMENTATIONS) == {"white_balance", "chroma", "defocus", "scale", "noise", "jpeg"}


def test_site_layers_run_only_in_training_and_survive_save_and_load(tmp_path):
    augmentation = build_augmentation(seed=1, site=site_augmentation.SITE_AUGMENTATIONS)
    inputs = keras.Input((48, 48, 3))
    model = keras.Model(inputs, augmentation(inputs))
    images = _smear(batch=2, size=48)
    assert np.array_equal(_numpy(model(images)), images)  # serving: the identity
    assert not np.allclose(_numpy(model(images, training=True)), images)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    names = [layer.name for layer in loaded.get_layer("augmentation").augmenters]
    assert [n for n in names if n.startswith("site_")] == [f"site_{n}" for n in site_augmentation.SITE_AUGMENTATIONS]
    assert loaded.get_layer("augmentation").get_layer("site_jpeg").get_config()["min_quality"] == 25

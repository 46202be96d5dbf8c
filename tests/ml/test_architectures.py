"""Every architecture builds, takes a training step, and survives save/load with safe_mode=True."""

import keras
import numpy as np
import pytest

from ml import architectures
from ml.architectures import (
    ARCHITECTURE_NAMES,
    BATCHNORM_MOMENTUM,
    build_model,
    describe_preprocessing,
    normalisation_of,
)
from ml.augmentation import build_augmentation
from ml.layers import CaffeNormalization, PerImageColourStandardization

SIZE = 32  # the smallest size keras.applications accept; keeps ResNet50/VGG19 fast enough


def _batch(n=4, seed=0, size=SIZE):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 4


def _compiled(architecture, **kwargs):
    model = build_model(architecture, image_size=SIZE, seed=1, **kwargs)
    # Eager steps: tracing a ResNet50 train step costs ~20 s on 2 CPU cores, an eager step ~5 s.
    # Graph-mode fit is covered by the convnet tests in test_train.py / test_pipeline.py.
    model.compile(
        optimizer=keras.optimizers.Adam(architectures.default_learning_rate(architecture)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        run_eagerly=True,
    )
    return model


@pytest.fixture(scope="module", params=ARCHITECTURE_NAMES)
def stepped(request, tmp_path_factory):
    """(architecture, model after one training step, the same model saved and loaded back)."""
    architecture = request.param
    model = _compiled(architecture)
    x, y = _batch(8)
    model.train_on_batch(x, y)
    path = tmp_path_factory.mktemp(architecture) / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    return architecture, model, loaded


@pytest.mark.slow
def test_train_step_then_save_load_gives_identical_model(stepped):
    architecture, model, loaded = stepped
    # Every variable (weights and BatchNorm moving statistics) comes back bit for bit.
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    for original, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(original), err_msg=original.path)
    x = np.random.default_rng(42).uniform(0, 255, (6, SIZE, SIZE, 3)).astype("float32")
    before = np.asarray(model(x, training=False))
    after = np.asarray(loaded(x, training=False))
    assert before.shape == (6, 4)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    if architecture == "mobilenetv2":
        # After one step its inference output is still the same for every input (ReLU6 saturates
        # while the BatchNorm moving statistics catch up), so equal predictions prove little.
        # Compare the backbone in batch-statistics mode, which does depend on the input.
        backbone = next(layer for layer in model.layers if layer.name.startswith("mobilenetv2"))
        loaded_backbone = loaded.get_layer(backbone.name)
        normalised = np.asarray(model.get_layer("normalise")(x))
        before = np.asarray(backbone(normalised, training=True)).reshape(len(x), -1)
        after = np.asarray(loaded_backbone(normalised, training=True)).reshape(len(x), -1)
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    assert np.ptp(before, axis=0).max() > 1e-6, f"{architecture} outputs do not depend on the input"


@pytest.mark.slow
def test_layout_and_batchnorm_momentum(stepped):
    architecture, model, loaded = stepped
    for m in (model, loaded):
        names = [layer.name for layer in m.layers]
        assert names[0] == "image" and names[1] == "augmentation" and names[2] == "normalise"
        assert names[-1] == "predictions"
        assert m.input_shape == (None, SIZE, SIZE, 3)
        batchnorms = [
            layer for layer in architectures.iter_layers(m) if isinstance(layer, keras.layers.BatchNormalization)
        ]
        if architecture in ("mobilenetv2", "resnet50", "convnet_bn"):
            assert batchnorms, architecture
        assert all(layer.momentum == BATCHNORM_MOMENTUM for layer in batchnorms)
    assert describe_preprocessing(loaded)["in_model_normalisation"]


def test_study_convnet_layers():
    model = build_model("convnet", image_size=64, augment=False)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 4 and kinds.count("MaxPooling2D") == 3
    assert kinds.count("Dropout") == 2 and kinds.count("Flatten") == 1 and kinds.count("Dense") == 1
    assert kinds[:2] == ["InputLayer", "Rescaling"]  # no augmentation block when augment=False
    assert model.layers[-1].activation.__name__ == "softmax"


def test_normalisation_per_architecture(monkeypatch, tmp_path):
    assert normalisation_of(build_model("convnet", 16, augment=False)) == "unit"
    assert normalisation_of(build_model("mobilenetv2", 32, augment=False)) == "symmetric"
    # With ImageNet weights, ResNet50/VGG19 get the "caffe" input those weights were trained on.
    seen = {}

    def tiny_backbone(architecture, image_size, weights_path):
        seen["weights_path"] = weights_path
        inputs = keras.Input((image_size, image_size, 3))
        return keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))

    monkeypatch.setattr(architectures, "_application_backbone", tiny_backbone)
    assert normalisation_of(build_model("vgg19", 32, augment=False)) == "symmetric"
    model = build_model("vgg19", 32, augment=False, weights_path=tmp_path / "w.h5")
    assert normalisation_of(model) == "caffe" and seen["weights_path"] == tmp_path / "w.h5"


def test_caffe_normalisation_matches_keras_preprocess_input():
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(CaffeNormalization()(x)), expected, rtol=1e-5, atol=1e-4)


def test_local_backbone_weights_are_loaded(tmp_path):
    backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None)
    kernel = backbone.get_layer("Conv1").kernel
    kernel.assign(np.full(kernel.shape, 0.0123, dtype="float32"))
    path = tmp_path / "mobilenet_notop.weights.h5"
    backbone.save_weights(path)
    model = build_model("mobilenetv2", 32, augment=False, weights_path=path)
    loaded_kernel = np.asarray(model.get_layer("mobilenetv2_1.00_32").get_layer("Conv1").kernel)
    assert np.allclose(loaded_kernel, 0.0123)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown architecture"):
        build_model("alexnet")
    with pytest.raises(ValueError, match=">= 32"):
        build_model("mobilenetv2", image_size=16)
    with pytest.raises(ValueError, match="weights_path"):
        build_model("convnet", image_size=32, weights_path="x.h5")


def test_augmentation_only_in_training():
    model = build_model("convnet", image_size=SIZE, seed=3)
    augmentation = model.get_layer("augmentation")
    x = np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(augmentation(x, training=False)), x)
    first, second = np.asarray(augmentation(x, training=True)), np.asarray(augmentation(x, training=True))
    assert np.abs(first - x).mean() > 1 and np.abs(first - second).mean() > 1
    assert first.shape == x.shape and first.min() >= -1e-3 and first.max() <= 255 + 1e-3
    # The whole model is deterministic at inference, even when the caller forgets training=False
    # (bare Keras random layers would augment on a plain model(x) call).
    reference = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(np.asarray(model(x)), reference)
    np.testing.assert_array_equal(np.asarray(model(x)), reference)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference, rtol=1e-6, atol=1e-7)
    assert np.abs(np.asarray(model(x, training=True)) - reference).max() > 0


def test_augmentation_strength_and_switches():
    assert build_augmentation(strength=0) is None
    assert "augmentation" not in [layer.name for layer in build_model("convnet", 16, augment=False).layers]
    names = [layer.name for layer in build_augmentation(strength=1.0).augmenters]
    assert {"flip", "rotation", "shear", "zoom", "brightness", "contrast", "saturation", "hue"} <= set(names)
    geometric_only = [layer.name for layer in build_augmentation(strength=0.5, color=False).augmenters]
    assert "hue" not in geometric_only
    shear = build_augmentation(strength=0.5).get_layer("shear")
    assert shear.x_factor == (-0.1, 0.1)
    # The registered shear layer round-trips its config (Keras 3.15's own RandomShear does not).
    clone = type(shear).from_config(shear.get_config())
    assert clone.x_factor == shear.x_factor and clone.y_factor == shear.y_factor


@pytest.mark.parametrize(
    "option, bad_value, layer_name, attribute, value",
    [
        ("grayscale", 1.5, "grayscale", "factor", 1.0),
        ("stain", 1.0, "stain", "sigma", 0.1),
    ],
)
def test_optional_augmentation_is_off_by_default_training_only_and_saved(
    option, bad_value, layer_name, attribute, value, tmp_path
):
    assert layer_name not in [layer.name for layer in build_augmentation().augmenters]
    with pytest.raises(ValueError, match=option):
        build_augmentation(**{option: bad_value})
    model = build_model("convnet", image_size=SIZE, seed=3, **{f"augment_{option}": value})
    augmentation = model.get_layer("augmentation")
    x = np.random.default_rng(2).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(augmentation(x, training=False)), x)  # never at inference
    model.save(tmp_path / "augmented.keras")
    loaded = keras.saving.load_model(tmp_path / "augmented.keras", safe_mode=True)
    assert getattr(loaded.get_layer("augmentation").get_layer(layer_name), attribute) == pytest.approx(value)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_grayscale_augmentation_at_probability_one_turns_every_image_gray():
    x = np.random.default_rng(2).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    gray = np.asarray(build_augmentation(grayscale=1.0, seed=3)(x, training=True))
    np.testing.assert_allclose(gray[..., 0], gray[..., 1], atol=1e-3)
    np.testing.assert_allclose(gray[..., 1], gray[..., 2], atol=1e-3)


def test_stain_jitter_changes_each_images_stain_amounts_and_keeps_padding():
    from ml.layers import RandomStainJitter

    rng = np.random.default_rng(4)
    x = rng.uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    x[:, :3] = 0  # padding rows
    x[:, 8, 8] = x[:, 9, 9] = (120.0, 60.0, 200.0)  # the same colour twice in every image
    # sigma 0: optical density there and back, the identity to float rounding.
    np.testing.assert_allclose(np.asarray(RandomStainJitter(0.0)(x)), x, atol=0.01)
    out = np.asarray(RandomStainJitter(0.2, seed=5)(x))
    assert out.min() >= 0 and out.max() <= 255
    assert (out[:, :3] == 0).all()  # PerImageColourStandardization must still see the padding
    # One draw per image: a colour maps to one colour inside an image ...
    np.testing.assert_allclose(out[:, 8, 8], out[:, 9, 9], atol=1e-4)
    # ... and to different colours in different images (other amounts of each stain).
    assert np.abs(out[0, 8, 8] - out[1, 8, 8]).max() > 1 and np.abs(out[1, 8, 8] - out[2, 8, 8]).max() > 1
    # It acts in optical density, not as a brightness shift: channels change by different factors.
    ratio = out[:, 10:] / np.maximum(x[:, 10:], 1)
    assert np.abs(np.median(ratio[..., 0]) - np.median(ratio[..., 2])) > 0.01
    with pytest.raises(ValueError, match="sigma"):
        RandomStainJitter(-0.1)


def test_batchnorm_moving_mean_moves_with_momentum_0_9():
    model = build_model("convnet_bn", image_size=SIZE, augment=False, seed=2)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy", run_eagerly=True)
    x, y = _batch(8)
    conv_out = keras.Model(model.input, model.get_layer("conv1").output)(x.astype("float32"))
    batch_mean = np.asarray(conv_out).mean(axis=(0, 1, 2))
    model.train_on_batch(x, y)
    moving_mean = np.asarray(model.get_layer("bn1").moving_mean)
    np.testing.assert_allclose(moving_mean, (1 - BATCHNORM_MOMENTUM) * batch_mean, rtol=1e-4, atol=1e-6)


def _assert_saved_and_loaded(normalisation, described, tmp_path):
    """A model with this in-model normalisation says so, and saves and loads (safe mode) intact."""
    model = build_model("mobilenetv2", SIZE, augment=False, normalisation=normalisation, seed=1)
    assert normalisation_of(model) == normalisation
    assert described in describe_preprocessing(model)["in_model_normalisation"]
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert normalisation_of(loaded) == normalisation
    batch, _ = _batch(2)
    np.testing.assert_allclose(loaded.predict_on_batch(batch), model.predict_on_batch(batch), atol=1e-6)


def test_per_image_colour_standardisation_removes_each_images_channel_statistics(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(40, 200, (2, 16, 16, 3)).astype("float32")
    x[:, :4] = 0  # padding rows, as resize_with_pad adds them
    # Another lab's stain or camera: each channel scaled and shifted differently.
    restained = x * np.float32([0.8, 1.1, 0.9]) + np.float32([10, -5, 3])
    restained[:, :4] = 0
    layer = PerImageColourStandardization()
    out, out_restained = np.asarray(layer(x)), np.asarray(layer(restained))
    np.testing.assert_allclose(out, out_restained, atol=1e-4)
    content = out[:, 4:].reshape(2, -1, 3)
    np.testing.assert_allclose(content.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(content.std(axis=1), 1.0, atol=1e-4)
    assert not out[:, :4].any()  # padding stays 0 and is left out of the statistics
    flat = np.asarray(layer(np.full((1, 4, 4, 3), 128.0, "float32")))
    assert np.isfinite(flat).all() and not flat.any()  # a flat frame is centred, not divided by 0

    _assert_saved_and_loaded("per_image", "R, G, B", tmp_path)
    with pytest.raises(ValueError, match="unknown normalisation"):
        build_model("convnet", SIZE, normalisation="histogram")


def _lab_of(rgb):
    """CIELAB of 0..255 RGB by OpenCV (float input: its exact sRGB formulas), for comparison."""
    import cv2

    return np.stack([cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab) for image in rgb])


def test_per_image_lab_standardisation_is_reinhards_normalisation_inside_the_model(tmp_path):
    import cv2

    from ml.layers import PerImageLabStandardization, rgb_to_lab

    rng = np.random.default_rng(0)
    x = rng.uniform(40, 220, (2, 16, 16, 3)).astype("float32")
    x[:, :4] = 0  # padding rows, as resize_with_pad adds them
    np.testing.assert_allclose(np.asarray(rgb_to_lab(x)), _lab_of(x), atol=0.5)

    layer = PerImageLabStandardization()
    out = np.asarray(layer(x))
    content = out[:, 4:].reshape(2, -1, 3)
    np.testing.assert_allclose(content.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(content.std(axis=1), 1.0, atol=1e-4)
    assert not out[:, :4].any()  # padding stays 0 and is left out of the statistics

    # What the R, G, B standardisation keeps and this takes away: the image blended towards its own
    # grey (less saturated), and a cast along the opponent axes (L, a, b shifted), done in CIELAB.
    lab = _lab_of(x[:, 4:])
    changed = lab * np.float32([0.9, 0.6, 0.6]) + np.float32([4.0, 3.0, -5.0])
    restained = np.stack([cv2.cvtColor(image, cv2.COLOR_Lab2RGB) for image in changed]) * 255.0
    assert restained.min() > 0 and restained.max() < 255  # no clipping: the change is exactly affine in CIELAB
    restained = np.concatenate([x[:, :4], restained.astype("float32")], axis=1)
    np.testing.assert_allclose(np.asarray(layer(restained))[:, 4:], out[:, 4:], atol=0.05)
    rgb_standardised = [np.asarray(PerImageColourStandardization()(batch))[:, 4:] for batch in (x, restained)]
    assert np.abs(rgb_standardised[0] - rgb_standardised[1]).max() > 0.2

    flat = np.asarray(layer(np.full((1, 4, 4, 3), 128.0, "float32")))
    assert np.isfinite(flat).all() and np.abs(flat).max() < 1e-3  # centred, not divided by 0

    # A camera's white balance (channel gains) is not affine in CIELAB; the grey-world balance
    # cancels it first.
    cooler = x * np.float32([0.92, 1.0, 1.10])
    assert np.abs(np.asarray(layer(cooler)) - out).max() > 0.05
    balanced = PerImageLabStandardization(balance=True)
    np.testing.assert_allclose(np.asarray(balanced(cooler)), np.asarray(balanced(x)), atol=2e-3)
    assert not np.asarray(balanced(x))[:, :4].any()

    _assert_saved_and_loaded("per_image_lab", "CIELAB", tmp_path)
    _assert_saved_and_loaded("per_image_balanced_lab", "grey world", tmp_path)


def _backbone_feature_spread(model, images):
    features = keras.Model(model.inputs[0], model.get_layer("avg_pool").output)(images)
    return float(np.std(keras.ops.convert_to_numpy(features)))


def test_vgg19_from_scratch_passes_signal_through_its_16_convolutions(monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    model = build_model("vgg19", 32, augment=False, seed=3)
    assert _backbone_feature_spread(model, images) > 0.1
    # Keras's own (Glorot) kernels: the signal vanishes on the way (why training sat at chance).
    monkeypatch.setattr(architectures, "he_initialise_convolutions", lambda *args, **kwargs: 0)
    assert _backbone_feature_spread(build_model("vgg19", 32, augment=False, seed=3), images) < 0.01


def test_he_initialisation_draws_each_kernel_afresh():
    backbone = keras.applications.VGG19(input_shape=(32, 32, 3), include_top=False, weights=None)
    assert architectures.he_initialise_convolutions(backbone, seed=5) == 16
    first, second = backbone.get_layer("block3_conv2").kernel, backbone.get_layer("block3_conv3").kernel
    first, second = keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(second)
    assert first.shape == second.shape and not np.allclose(first, second)  # same shape, other values
    fan_in = np.prod(first.shape[:3])
    assert abs(float(first.std()) - np.sqrt(2.0 / fan_in)) < 0.2 * np.sqrt(2.0 / fan_in)

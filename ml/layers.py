"""Custom layers that must survive ``keras.saving.load_model(..., safe_mode=True)``.

Registered under the "telediag" package: import this module (artifacts.load_model_verified does)
before loading a model that contains them.
"""

import keras
import numpy as np
from keras import ops

# keras.applications "caffe" preprocessing constants (ResNet50, VGG19): BGR means of ImageNet.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="telediag")
class CaffeNormalization(keras.layers.Layer):
    """RGB 0..255 -> BGR with the ImageNet mean subtracted (what ResNet50/VGG19 weights expect).

    Same arithmetic as keras.applications.{resnet50,vgg19}.preprocess_input, but as a layer so it is
    saved inside the model and serving cannot forget or change it.
    """

    def __init__(self, mean=IMAGENET_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)

    def call(self, inputs):
        bgr = ops.flip(inputs, axis=-1)
        return bgr - ops.convert_to_tensor(self.mean, dtype=bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["mean"] = list(self.mean)
        return config


@keras.saving.register_keras_serializable(package="telediag")
class SymmetricRandomShear(keras.layers.RandomShear):
    """keras.layers.RandomShear with a config that survives save/load.

    Keras 3.15's RandomShear.get_config() writes ``x_factor`` as the pair (-f, f), and its
    constructor then rejects the negative bound, so a saved model containing it cannot be loaded.
    We only ever use symmetric ranges, so the config stores the single magnitude f instead.
    """

    def get_config(self):
        config = super().get_config()
        config["x_factor"] = _magnitude(self.x_factor)
        config["y_factor"] = _magnitude(self.y_factor)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("x_factor", "y_factor"):
            if isinstance(config.get(key), (list, tuple)):
                config[key] = _magnitude(config[key])
        return super().from_config(config)


def _magnitude(factor):
    if isinstance(factor, (list, tuple)):
        return float(max(abs(v) for v in factor))
    return float(abs(factor))


@keras.saving.register_keras_serializable(package="telediag")
class TrainingOnlyAugmentation(keras.layers.Layer):
    """Applies its random layers only when called with training=True; otherwise the identity.

    Keras 3 random preprocessing layers default to training=True when nobody says otherwise, so a
    plain ``model(x)`` (no ``training=False``) would augment at inference. This wrapper's default
    is False, and it passes its value down, so serving code cannot get random predictions by
    forgetting the flag. ``fit`` passes training=True and gets the augmentation.
    """

    def __init__(self, augmenters, **kwargs):
        super().__init__(**kwargs)
        self.augmenters = list(augmenters)

    def build(self, input_shape):
        for layer in self.augmenters:
            layer.build(input_shape)
        super().build(input_shape)

    def call(self, inputs, training=False):
        if not training:
            return inputs
        x = inputs
        for layer in self.augmenters:
            x = layer(x, training=True)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_layer(self, name):
        for layer in self.augmenters:
            if layer.name == name:
                return layer
        raise ValueError(f"No augmentation layer named {name!r}")

    def get_config(self):
        config = super().get_config()
        config["augmenters"] = [keras.saving.serialize_keras_object(layer) for layer in self.augmenters]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        augmenters = [keras.saving.deserialize_keras_object(item) for item in config.pop("augmenters")]
        return cls(augmenters, **config)


def _content_of(x, pad_value):
    """1.0 where a pixel of the (N, H, W, 3) batch is content, 0.0 where it is padding."""
    return ops.cast(ops.any(ops.not_equal(x, pad_value), axis=-1, keepdims=True), "float32")


def _standardise_content(x, content, min_std):
    """Each image's channels to mean 0 and spread 1 over its content pixels; padding becomes 0."""
    count = ops.maximum(ops.sum(content, axis=(1, 2), keepdims=True), 1.0)
    mean = ops.sum(x * content, axis=(1, 2), keepdims=True) / count
    centred = (x - mean) * content
    variance = ops.sum(centred * centred, axis=(1, 2), keepdims=True) / count
    std = ops.maximum(ops.sqrt(variance), min_std)
    return centred / std


# sRGB (D65) to CIE XYZ, each row divided by the D65 white's X, Y or Z: white maps to (1, 1, 1).
_RGB_TO_XYZ_WHITE = (
    np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
    / np.array([[0.950456], [1.0], [1.088754]])
).T.astype("float32")
_LAB_EPSILON = (6.0 / 29.0) ** 3


def rgb_to_lab(rgb):
    """CIELAB (D65) of 0..255 sRGB values (..., 3): L in 0..100, a and b about -128..127."""
    c = ops.cast(rgb, "float32") / 255.0
    linear = ops.where(c <= 0.04045, c / 12.92, ops.power((ops.maximum(c, 0.04045) + 0.055) / 1.055, 2.4))
    t = ops.matmul(linear, _RGB_TO_XYZ_WHITE)
    f = ops.where(
        t > _LAB_EPSILON,
        ops.power(ops.maximum(t, _LAB_EPSILON), 1.0 / 3.0),
        t / (3.0 * (6.0 / 29.0) ** 2) + 4.0 / 29.0,
    )
    fx, fy, fz = f[..., 0:1], f[..., 1:2], f[..., 2:3]
    return ops.concatenate([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


class _PerImageStandardization(keras.layers.Layer):
    """Each image's channels, in the colour space ``colours`` gives, to zero mean and unit spread
    over its content pixels. Padding (pixels at ``pad_value`` in every channel, what
    ``resize_with_pad`` adds) is left out of the statistics and stays 0. A channel with less spread
    than ``min_std`` (a flat frame) is only centred, not blown up."""

    def __init__(self, pad_value=0.0, min_std=1.0, **kwargs):
        super().__init__(**kwargs)
        self.pad_value = float(pad_value)
        self.min_std = float(min_std)

    def colours(self, x, content):
        return x

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        content = _content_of(x, self.pad_value)
        return _standardise_content(self.colours(x, content), content, self.min_std)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(pad_value=self.pad_value, min_std=self.min_std)
        return config


@keras.saving.register_keras_serializable(package="telediag")
class PerImageColourStandardization(_PerImageStandardization):
    """Each image's R, G and B mapped to zero mean and unit spread over its content pixels.

    In the development data every class's images share a stain, so the per-channel mean and spread
    of an image nearly give its class away (the colour-only baseline). Removing exactly those six
    numbers inside the model leaves it only the pattern of the pixels (cells, nuclei, texture) to
    learn from, and makes it indifferent to a lab whose stain or camera shifts or scales a colour
    channel. ``min_std`` is in 0..255 units.
    """


@keras.saving.register_keras_serializable(package="telediag")
class PerImageLabStandardization(_PerImageStandardization):
    """Reinhard's colour normalisation inside the model: each image's CIELAB L, a and b mapped to
    zero mean and unit spread over its content pixels, and given to the network as such.

    Reinhard et al. (2001) match an image's mean and spread in a decorrelated colour space to a
    target's; mapping to fixed targets and back to RGB would only add an affine step before the
    first convolution, which learns its own. Unlike PerImageColourStandardization (R, G, B), this
    also takes away how saturated the image is (the spread of a and b) and the colour cast along
    the opponent axes, whichever channels a lab's stain or camera changes. ``min_std`` is in CIELAB
    units. ``balance``: first scale R, G and B to the same mean (grey world), which cancels channel
    gains (a camera's white balance, a lamp's colour) that CIELAB's non-linear axes do not.
    """

    def __init__(self, balance=False, **kwargs):
        super().__init__(**kwargs)
        self.balance = bool(balance)

    def colours(self, x, content):
        if self.balance:  # grey world: a camera's or lamp's channel gains cancel before CIELAB
            count = ops.maximum(ops.sum(content, axis=(1, 2), keepdims=True), 1.0)
            means = ops.maximum(ops.sum(x * content, axis=(1, 2), keepdims=True) / count, 1.0)
            x = x * (ops.mean(means, axis=-1, keepdims=True) / means)
        return rgb_to_lab(x)

    def get_config(self):
        config = super().get_config()
        config.update(balance=self.balance)
        return config


# Ruifrok & Johnston's stain vectors: optical density in R, G, B per unit of haematoxylin, eosin
# and DAB. A Wright-Giemsa smear has other dyes, but three independent directions in optical
# density are what the jitter needs: varying the amount of each "stain" changes colour the way
# stain uptake, staining time and the lamp do, which a hue or saturation shift does not.
HED_STAIN_VECTORS = ((0.650, 0.704, 0.286), (0.072, 0.990, 0.105), (0.268, 0.570, 0.776))


@keras.saving.register_keras_serializable(package="telediag")
class RandomStainJitter(keras.layers.Layer):
    """Random stain amounts per image (the "HED" augmentation of Tellez et al., 2018).

    Each 0..255 RGB image is taken to optical density, unmixed into the three stain amounts,
    each amount scaled by a factor drawn from [1 - sigma, 1 + sigma] and shifted by one drawn from
    [-sigma, sigma] (per image and stain), mixed back and returned to 0..255. With sigma 0 it is
    the identity (to float rounding). Padding (pixels that are 0 in every channel, what
    ``resize_with_pad`` adds) stays 0, so PerImageColourStandardization still recognises it.
    Meant for TrainingOnlyAugmentation, which calls it only while training.
    """

    def __init__(self, sigma=0.05, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(sigma) < 1.0:
            raise ValueError(f"sigma must be in [0, 1), got {sigma!r}")
        self.sigma = float(sigma)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        stains = np.asarray(HED_STAIN_VECTORS, dtype="float64")
        stains /= np.linalg.norm(stains, axis=1, keepdims=True)
        self._mix = stains.astype("float32")  # amounts (..., 3) @ mix -> optical density (..., 3)
        self._unmix = np.linalg.inv(stains).astype("float32")

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        padding = ops.all(ops.equal(x, 0.0), axis=-1, keepdims=True)
        amounts = ops.matmul(-ops.log((x + 1.0) / 256.0), self._unmix)
        shape = (ops.shape(x)[0], 1, 1, 3)
        scale = keras.random.uniform(shape, 1.0 - self.sigma, 1.0 + self.sigma, seed=self.generator)
        shift = keras.random.uniform(shape, -self.sigma, self.sigma, seed=self.generator)
        density = ops.matmul(amounts * scale + shift, self._mix)
        jittered = ops.clip(256.0 * ops.exp(-density) - 1.0, 0.0, 255.0)
        return ops.where(padding, 0.0, jittered)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(sigma=self.sigma, seed=self.seed)
        return config

"""Custom layers that must survive ``keras.saving.load_model(..., safe_mode=True)``.

Registered under the "telediag" package: import this module (artifacts.load_model_verified does)
before loading a model that contains them.
"""

import keras
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


@keras.saving.register_keras_serializable(package="telediag")
class PerImageColourStandardization(keras.layers.Layer):
    """Each image's R, G and B mapped to zero mean and unit spread over its content pixels.

    In the development data every class's images share a stain, so the per-channel mean and spread
    of an image nearly give its class away (the colour-only baseline). Removing exactly those six
    numbers inside the model leaves it only the pattern of the pixels (cells, nuclei, texture) to
    learn from, and makes it indifferent to a lab whose stain or camera shifts or scales a colour
    channel. Padding (pixels at ``pad_value`` in every channel, what ``resize_with_pad`` adds)
    is left out of the statistics and stays 0. A channel with less spread than ``min_std`` (0..255
    units: a flat frame) is only centred, not blown up.
    """

    def __init__(self, pad_value=0.0, min_std=1.0, **kwargs):
        super().__init__(**kwargs)
        self.pad_value = float(pad_value)
        self.min_std = float(min_std)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        content = ops.cast(ops.any(ops.not_equal(x, self.pad_value), axis=-1, keepdims=True), "float32")
        count = ops.maximum(ops.sum(content, axis=(1, 2), keepdims=True), 1.0)
        mean = ops.sum(x * content, axis=(1, 2), keepdims=True) / count
        centred = (x - mean) * content
        variance = ops.sum(centred * centred, axis=(1, 2), keepdims=True) / count
        std = ops.maximum(ops.sqrt(variance), self.min_std)
        return centred / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(pad_value=self.pad_value, min_std=self.min_std)
        return config

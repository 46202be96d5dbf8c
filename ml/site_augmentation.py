"""Training augmentation for what differs between sites: the lamp's white balance, the camera's colour
rendering, focus, resolution, sensor noise and JPEG compression.

Each is a registered Keras layer written with backend-agnostic ``keras.ops`` (TensorFlow, JAX and
PyTorch), drawing its strength per image, on 0..255 float RGB, meant to run inside
layers.TrainingOnlyAugmentation. They are written separately from ml.site_shifts (numpy/OpenCV),
which evaluates a model on the same kinds of change: a model trained on one of these kinds is not
credited with that family there (``ml.site_shifts.SITE_AUGMENTATION_FAMILIES``).

Amplitudes are at the input size of the model (128 px for the shipped recipe), not the 224 px of the
development images.
"""

import math

import keras
import numpy as np
from keras import ops

# BT.601 full-range YCbCr, as JPEG files use it.
_YCBCR_FROM_RGB = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype="float32"
)
_RGB_FROM_YCBCR = np.linalg.inv(_YCBCR_FROM_RGB).astype("float32")
# The example quantisation tables of the JPEG standard (ITU-T T.81, Annex K), at quality 50.
_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype="float32",
)
_CHROMA_TABLE = np.full((8, 8), 99.0, dtype="float32")
_CHROMA_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def _dct_matrix(n=8):
    """Orthonormal DCT-II matrix: coefficients = D @ block @ D.T."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.cos((2 * i + 1) * k * math.pi / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix.astype("float32")


_DCT = _dct_matrix()


def _per_image_uniform(inputs, low, high, generator, channels=1):
    shape = (ops.shape(inputs)[0], 1, 1, channels)
    return keras.random.uniform(shape, low, high, seed=generator)


def _sometimes(inputs, rate, generator):
    """1.0 for a share ``rate`` of the images, else 0.0 (shape (batch, 1, 1, 1))."""
    return ops.cast(_per_image_uniform(inputs, 0.0, 1.0, generator) < rate, "float32")


class _RandomSiteLayer(keras.layers.Layer):
    """Shared config and seed handling; subclasses implement ``call`` on 0..255 float RGB."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


@keras.saving.register_keras_serializable(package="telediag")
class RandomChannelGain(_RandomSiteLayer):
    """A lamp's colour temperature or a camera's white balance: each of R, G, B multiplied by its own
    gain from [1 - max_gain, 1 + max_gain], then clipped to 0..255 as a sensor saturates."""

    def __init__(self, max_gain=0.12, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_gain = float(max_gain)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        gains = _per_image_uniform(x, 1.0 - self.max_gain, 1.0 + self.max_gain, self.generator, channels=3)
        return ops.clip(x * gains, 0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), "max_gain": self.max_gain}


@keras.saving.register_keras_serializable(package="telediag")
class RandomChroma(_RandomSiteLayer):
    """A camera's colour rendering: the chroma of every pixel scaled by a factor from
    [1 - max_scale, 1 + max_scale] and turned about the grey axis by up to ``max_degrees``, in an
    opponent space (grey axis and two orthonormal chroma axes of RGB), so that brightness is kept."""

    def __init__(self, max_scale=0.4, max_degrees=15.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_scale = float(max_scale)
        self.max_degrees = float(max_degrees)
        basis = np.array([[1, 1, 1], [1, -1, 0], [1, 1, -2]], dtype="float64")
        self._basis = (basis / np.linalg.norm(basis, axis=1, keepdims=True)).astype("float32")

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        batch = ops.shape(x)[0]
        scale = keras.random.uniform((batch,), 1.0 - self.max_scale, 1.0 + self.max_scale, seed=self.generator)
        radians = math.radians(self.max_degrees)
        angle = keras.random.uniform((batch,), -radians, radians, seed=self.generator)
        cos, sin = scale * ops.cos(angle), scale * ops.sin(angle)
        ones, zeros = ops.ones_like(cos), ops.zeros_like(cos)
        # (batch, 3, 3): keep the grey coordinate, scale and rotate the two chroma coordinates.
        opponent = ops.stack(
            [
                ops.stack([ones, zeros, zeros], axis=-1),
                ops.stack([zeros, cos, -sin], axis=-1),
                ops.stack([zeros, sin, cos], axis=-1),
            ],
            axis=1,
        )
        basis = ops.convert_to_tensor(self._basis)
        # pixel row vector p: p' = p @ B.T @ opponent.T @ B
        mix = ops.einsum("ij,bkj,kl->bil", ops.transpose(basis), opponent, basis)
        return ops.clip(ops.einsum("bhwc,bcd->bhwd", x, mix), 0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), "max_scale": self.max_scale, "max_degrees": self.max_degrees}


@keras.saving.register_keras_serializable(package="telediag")
class RandomDefocus(_RandomSiteLayer):
    """A focus error: a share ``rate`` of the images blended with their Gaussian-blurred selves
    (standard deviation ``sigma`` pixels) by a weight from [0, 1], so the blur ranges from none to full."""

    def __init__(self, sigma=1.2, rate=0.5, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.sigma = float(sigma)
        self.rate = float(rate)
        radius = max(1, int(math.ceil(2.5 * self.sigma)))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / self.sigma) ** 2)
        kernel = np.outer(taps, taps)
        kernel /= kernel.sum()
        self._radius = radius
        self._kernel = np.repeat(kernel[:, :, None, None], 3, axis=2).astype("float32")  # (k, k, 3, 1)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        r = self._radius
        padded = ops.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
        blurred = ops.depthwise_conv(padded, ops.convert_to_tensor(self._kernel), strides=1, padding="valid")
        weight = _per_image_uniform(x, 0.0, 1.0, self.generator) * _sometimes(x, self.rate, self.generator)
        return x + weight * (blurred - x)

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma, "rate": self.rate}


@keras.saving.register_keras_serializable(package="telediag")
class RandomResolution(_RandomSiteLayer):
    """Another objective or a coarser camera: a share ``rate`` of the images blended, by a weight from
    [0, 1], with a copy taken down to ``factor`` of its size (antialiased) and back up."""

    def __init__(self, factor=0.45, rate=0.5, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"factor must be between 0 and 1, got {factor!r}")
        self.factor = float(factor)
        self.rate = float(rate)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        height, width = x.shape[1], x.shape[2]
        small = (max(1, round(height * self.factor)), max(1, round(width * self.factor)))
        coarse = ops.image.resize(x, small, interpolation="bilinear", antialias=True)
        coarse = ops.image.resize(coarse, (height, width), interpolation="bicubic")
        weight = _per_image_uniform(x, 0.0, 1.0, self.generator) * _sometimes(x, self.rate, self.generator)
        return ops.clip(x + weight * (coarse - x), 0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "rate": self.rate}


@keras.saving.register_keras_serializable(package="telediag")
class RandomSensorNoise(_RandomSiteLayer):
    """Sensor noise: Gaussian noise per pixel and channel with a standard deviation per image from
    [0, ``max_std``] (0..255 units)."""

    def __init__(self, max_std=4.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_std = float(max_std)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        std = _per_image_uniform(x, 0.0, self.max_std, self.generator)
        noise = keras.random.normal(ops.shape(x), seed=self.generator)
        return ops.clip(x + std * noise, 0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), "max_std": self.max_std}


@keras.saving.register_keras_serializable(package="telediag")
class RandomJpeg(_RandomSiteLayer):
    """JPEG compression: with probability ``rate`` an image is coded as a baseline JPEG would code it
    (YCbCr, chroma averaged over 2x2 pixels, 8x8 block DCT, coefficients rounded to the standard's
    tables scaled to a quality from [min_quality, max_quality], IJG scaling) and decoded again.
    The lossless entropy coding is left out; the rounding is what changes the pixels."""

    def __init__(self, min_quality=25, max_quality=90, rate=0.6, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 1 <= int(min_quality) <= int(max_quality) <= 100:
            raise ValueError("qualities must satisfy 1 <= min_quality <= max_quality <= 100")
        self.min_quality = int(min_quality)
        self.max_quality = int(max_quality)
        self.rate = float(rate)

    def _code(self, plane, table, scale):
        """One channel (batch, H, W), H and W multiples of 8, through DCT, quantisation and back."""
        batch, height, width = ops.shape(plane)[0], plane.shape[1], plane.shape[2]
        blocks = ops.reshape(plane - 128.0, (batch, height // 8, 8, width // 8, 8))
        blocks = ops.transpose(blocks, (0, 1, 3, 2, 4))
        dct = ops.convert_to_tensor(_DCT)
        coefficients = ops.einsum("ij,bhwjk,lk->bhwil", dct, blocks, dct)
        step = ops.clip(ops.floor((table * scale + 50.0) / 100.0), 1.0, 255.0)
        quantised = ops.round(coefficients / step) * step
        blocks = ops.einsum("ji,bhwjk,kl->bhwil", dct, quantised, dct)
        blocks = ops.transpose(blocks, (0, 1, 3, 2, 4))
        return ops.reshape(blocks, (batch, height, width)) + 128.0

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        height, width = x.shape[1], x.shape[2]
        pad_h, pad_w = (-height) % 16, (-width) % 16
        padded = ops.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect") if pad_h or pad_w else x
        batch = ops.shape(x)[0]
        quality = keras.random.uniform(
            (batch, 1, 1, 1, 1), float(self.min_quality), float(self.max_quality), seed=self.generator
        )
        scale = ops.where(quality < 50.0, 5000.0 / quality, 200.0 - 2.0 * quality)
        ycbcr = ops.einsum("bhwc,dc->bhwd", padded, ops.convert_to_tensor(_YCBCR_FROM_RGB))
        luma = self._code(ycbcr[..., 0], ops.convert_to_tensor(_LUMA_TABLE), scale)
        chroma = []
        for channel in (1, 2):
            plane = ycbcr[..., channel : channel + 1] + 128.0
            half = ops.average_pool(plane, pool_size=2, strides=2, padding="valid")[..., 0]
            coded = self._code(half, ops.convert_to_tensor(_CHROMA_TABLE), scale)[..., None]
            full = ops.repeat(ops.repeat(coded, 2, axis=1), 2, axis=2)
            chroma.append(full[..., 0] - 128.0)
        decoded = ops.einsum(
            "bhwc,dc->bhwd", ops.stack([luma, *chroma], axis=-1), ops.convert_to_tensor(_RGB_FROM_YCBCR)
        )
        decoded = ops.clip(ops.round(decoded[:, :height, :width, :]), 0.0, 255.0)
        chosen = _sometimes(x, self.rate, self.generator)
        return x + chosen * (decoded - x)

    def get_config(self):
        return {
            **super().get_config(),
            "min_quality": self.min_quality,
            "max_quality": self.max_quality,
            "rate": self.rate,
        }


# --site-augment names -> the layers they add (in this order: colour first, then optics, sensor, codec);
# the names and the shift families each one trains are ml.site_shifts.SITE_AUGMENTATION_FAMILIES.
_LAYERS = {
    "white_balance": RandomChannelGain,
    "chroma": RandomChroma,
    "defocus": RandomDefocus,
    "scale": RandomResolution,
    "noise": RandomSensorNoise,
    "jpeg": RandomJpeg,
}
SITE_AUGMENTATIONS = tuple(_LAYERS)


def build_site_layers(names, seed=None):
    """The layers for ``names`` (a subset of SITE_AUGMENTATIONS), in a fixed order."""
    unknown = sorted(set(names) - set(_LAYERS))
    if unknown:
        raise ValueError(f"unknown site augmentation(s) {unknown}; choose from {', '.join(SITE_AUGMENTATIONS)}")
    chosen = [name for name in SITE_AUGMENTATIONS if name in set(names)]
    return [
        _LAYERS[name](seed=None if seed is None else seed + 20 + i, name=f"site_{name}")
        for i, name in enumerate(chosen)
    ]

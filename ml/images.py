"""The one image-preparation step shared by training and serving.

Everything a model ever sees goes through ``prepare_image``: training arrays are built with it and
the serving code must call it on uploads, so a picture is decoded, oriented, converted and resized
the same way in both places. ``decode_image`` and ``prepare_decoded`` are its two halves, for an
image needed at several sizes (the worker: the model's input and the smear check's, one decode).
Pixel scaling to the range an architecture expects is *not* done here: it lives inside the model as
Keras layers (see ``architectures``), so the model input is always RGB uint8 values 0..255 (fed as
float32).

Resizing follows the study ("resize with padding", like ``tf.image.resize_with_pad``): the image is
scaled to fit inside ``size`` x ``size`` with its aspect ratio kept, centred, and the borders are
filled with the constant PAD_VALUE (black, as resize_with_pad does). The development data set is
224x224 already, so padding only matters for uploads of other shapes.
"""

import io
import os
import warnings
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PAD_VALUE = 0  # black borders, the same as tf.image.resize_with_pad used in the study
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels become white, like a smear's bright background
RESAMPLE = Image.Resampling.BILINEAR

PREPROCESSING_DESCRIPTION = {
    "function": "ml.images.prepare_image",
    "decode": "Pillow, first frame, EXIF orientation applied",
    "colour": "8-bit RGB; 16-bit/32-bit/float greyscale scaled from its min..max to 0..255; alpha composited on white",
    "resize": "keep aspect ratio, bilinear, centred, pad to a square with constant 0 (black)",
    "model_input": "float32 RGB 0..255; scaling to the backbone's range is inside the model",
}

# Modes Pillow converts to RGB faithfully with Image.convert.
_DIRECT_MODES = {"RGB", "L", "1", "P", "CMYK", "YCbCr", "HSV", "RGBX"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;32", "I;32B"}


class ImageError(ValueError):
    """An image that cannot be read or converted (corrupt, truncated, unsupported)."""


def _open(source):
    """Open ``source`` (path, bytes, file object, PIL image or HxW[x3] uint8 array) as a PIL image."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(source)))
    if isinstance(source, (str, os.PathLike)):
        return Image.open(source)
    if hasattr(source, "read"):
        # Upload handlers may already have read the file (e.g. to validate it): read from the start.
        if hasattr(source, "seek") and getattr(source, "seekable", lambda: True)():
            source.seek(0)
        return Image.open(source)
    raise ImageError(f"Unsupported image source type: {type(source).__name__}")


def _describe(source):
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return str(name) if name else type(source).__name__


def _high_depth_to_l(image):
    """Scale a 16/32-bit or float single-channel image to 8 bits by its own min..max range.

    Pillow's ``convert("L")`` clips such images at 255 (most 16-bit micrographs turn white), so we
    stretch instead; a constant image becomes black.
    """
    array = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.any():
        return Image.new("L", image.size, 0)
    low, high = array[finite].min(), array[finite].max()
    if high <= low:
        scaled = np.zeros(array.shape, dtype=np.uint8)
    else:
        scaled = np.round((np.where(finite, array, low) - low) * (255.0 / (high - low)))
        scaled = np.clip(scaled, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def to_rgb(image):
    """Convert a PIL image of any common mode to 8-bit RGB (see module docstring for the rules)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _HIGH_DEPTH_MODES or mode.startswith("I;"):
        return _high_depth_to_l(image).convert("RGB")
    if mode in _DIRECT_MODES:
        return image.convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"Unsupported image mode {mode!r}") from exc


def resize_with_pad(image, size, pad_value=PAD_VALUE):
    """Fit ``image`` (RGB) inside ``size`` x ``size`` keeping its aspect ratio, centred on a pad."""
    width, height = image.size
    if (width, height) == (size, size):
        return image
    scale = size / max(width, height)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    resized = image.resize((new_w, new_h), RESAMPLE)
    if (new_w, new_h) == (size, size):
        return resized
    canvas = Image.new("RGB", (size, size), (pad_value,) * 3)
    canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def decode_image(source):
    """Decode ``source`` (as ``prepare_image`` takes it) into an oriented 8-bit RGB PIL image.

    For callers that need the image at several sizes (the worker: the model's input and the smear
    check's): ``prepare_decoded(decode_image(source), size)`` equals ``prepare_image(source, size)``
    and the file is decoded once. Raises ImageError for anything that cannot be decoded.
    """
    with _reading(source):
        with warnings.catch_warnings():
            # Pillow warns (then errors) on decompression bombs; the error is what we want.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open(source)
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)


def prepare_decoded(image, size, source=None):
    """A (size, size, 3) uint8 RGB array ready for the model, from ``decode_image``'s result."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    with _reading(image if source is None else source):
        array = np.asarray(resize_with_pad(image, size), dtype=np.uint8)
    if array.shape != (size, size, 3):  # defensive: never hand the model a malformed array
        raise ImageError(
            f"Unexpected prepared shape {array.shape} for {_describe(image if source is None else source)}"
        )
    return array


def prepare_image(source, size):
    """Decode ``source`` and return a (size, size, 3) uint8 RGB array ready for the model.

    ``source`` may be a path, bytes, a binary file object (read from its start), a PIL image or a
    uint8 array. Raises ImageError for anything that cannot be decoded.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    return prepare_decoded(decode_image(source), size, source)


@contextmanager
def _reading(source):
    """Pillow's and NumPy's errors on a bad image, as ImageError naming ``source``."""
    try:
        yield
    except ImageError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        TypeError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise ImageError(f"Cannot read image {_describe(source)}: {exc}") from exc

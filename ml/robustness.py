"""Colour robustness: deterministic colour shifts, stain-colour normalisation and grayscale copies.

Every image of a class in the development data shares a stain, so colour alone nearly predicts the
class. This module measures how much a model leans on colour: it re-evaluates the model on copies
of the test images whose colours were changed in ways a new lab, camera or stain batch could change
them, and reports the drop in accuracy and macro-F1 against the original images.

All transforms take and return uint8 RGB arrays, one image (H, W, 3) or a batch (N, H, W, 3), the
same as ``images.prepare_image`` produces, and are deterministic (no randomness anywhere):

=====================  ===========================================================================
``brightness_x0.85``   every RGB value multiplied by 0.85 (darker)
``brightness_x1.15``   every RGB value multiplied by 1.15, clipped at 255 (brighter)
``hue_+10deg``         hue rotated by +10 degrees in HSV (OpenCV, float32, hue in 0..360)
``hue_-10deg``         hue rotated by -10 degrees
``saturation_x0.7``    HSV saturation multiplied by 0.7
``saturation_x1.3``    HSV saturation multiplied by 1.3, clipped at 1
``colour_normalised``  per-channel colour statistics matched to one reference, in CIELAB (below)
``colour_normalised_rgb``  the same in RGB: each image's mean and std of R, G and B (exactly the
                       colour-only baseline's six numbers) matched to the reference
``grayscale``          ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B) copied to all three channels
=====================  ===========================================================================

Colour normalisation (Reinhard-style) works in **CIELAB** (OpenCV's float conversion: sRGB, D65,
L in 0..100, a and b about -128..127) or in **RGB**: for each image and each channel the image's
mean and standard deviation over its content pixels are mapped onto a reference mean and standard
deviation, ``c' = (c - mean_image) / std_image * std_ref + mean_ref``, then (CIELAB) converted back
to RGB, rounded and clipped to 0..255. RGB matching takes away the six numbers the colour-only
baseline reads, up to rounding and clipping (which still leak: how many pixels hit 0 or 255
depends on the stain); CIELAB matching is closer to how stain normalisation is done in pathology
and leaves the RGB statistics partly informative. The reference (``ColourReference``) is fitted on
the TRAINING split only: the average over the training images of each image's per-channel mean
and of its per-channel standard deviation. Padding added by ``resize_with_pad`` (whole black rows or columns at the edges) is
excluded from all statistics and left black.
"""

from dataclasses import dataclass

import numpy as np

from .evaluate import metrics_from_probabilities
from .images import PAD_VALUE

NORMALISATION_SPACE = "cielab"  # the default space (the "colour_normalised" variant)
NORMALISATION_SPACES = ("rgb", "cielab")
_STD_FLOOR = 1e-3  # a channel with less spread than this (a flat frame) is only shifted, not scaled
_CHUNK = 64  # images converted to float at a time (bounds the memory of large batches)

BRIGHTNESS_FACTORS = (0.85, 1.15)
HUE_SHIFTS_DEGREES = (10.0, -10.0)
SATURATION_FACTORS = (0.7, 1.3)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------------------------------
# Helpers shared with colour_baseline and smear_check


def as_batch(x):
    """(batch uint8 array (N, H, W, 3), whether the input was a single image)."""
    array = np.asarray(x)
    single = array.ndim == 3
    if single:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3) or (N, H, W, 3), got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 255):
            raise ValueError("pixel values must be in 0..255")
        array = np.rint(array).astype(np.uint8)
    return array, single


def _unbatch(batch, single):
    return batch[0] if single else batch


def all_channels(condition):
    """(H, W) True where ``condition`` (H, W, C) holds in every channel.

    Channel by channel: np.all over a last axis of length 3 is ~10x slower on a 224 px image.
    """
    result = condition[..., 0].copy()
    for channel in range(1, condition.shape[-1]):
        result &= condition[..., channel]
    return result


def content_mask(image, pad_value=PAD_VALUE):
    """Boolean (H, W) mask of the pixels that are not padding.

    Padding is what ``resize_with_pad`` adds: whole rows at the top and bottom, or whole columns
    at the left and right, equal to ``pad_value`` in all three channels. Only rows/columns touching
    the edge count, so a dark line inside the picture is kept. An image that is all padding (a
    black frame) keeps every pixel, so its statistics are still defined.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    mask = np.ones((height, width), dtype=bool)
    if image.size and all((edge != pad_value).any() for edge in (image[0], image[-1], image[:, 0], image[:, -1])):
        return mask  # no edge row or column is all padding: the usual upload, found without a full pass
    flat = all_channels(image == pad_value)
    rows, cols = flat.all(axis=1), flat.all(axis=0)
    if rows.all():
        return mask
    top = int(np.argmin(rows))
    bottom = int(np.argmin(rows[::-1]))
    left = int(np.argmin(cols))
    right = int(np.argmin(cols[::-1]))
    mask[:top] = False
    mask[height - bottom :] = False
    mask[:, :left] = False
    mask[:, width - right :] = False
    return mask


def _to_float(image):
    return image.astype(np.float32) / 255.0


def _to_uint8(image):
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def rgb_to_lab(image):
    """uint8 RGB (H, W, 3) -> float32 CIELAB (L 0..100, a/b about -128..127), OpenCV's conversion."""
    import cv2

    return cv2.cvtColor(_to_float(image), cv2.COLOR_RGB2Lab)


def lab_to_rgb(lab):
    import cv2

    return _to_uint8(cv2.cvtColor(np.asarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB))


def _map_images(x, function):
    """Apply ``function`` (one uint8 image -> one uint8 image) to an image or a batch."""
    batch, single = as_batch(x)
    out = np.empty_like(batch)
    for i in range(len(batch)):
        out[i] = function(batch[i])
    return _unbatch(out, single)


# --------------------------------------------------------------------------------------------------
# Colour shifts


def adjust_brightness(x, factor):
    """Multiply every RGB value by ``factor`` (rounded, clipped to 0..255)."""
    batch, single = as_batch(x)
    out = np.empty_like(batch)
    for start in range(0, len(batch), _CHUNK):
        part = batch[start : start + _CHUNK].astype(np.float32) * np.float32(factor)
        out[start : start + _CHUNK] = np.clip(np.rint(part), 0, 255).astype(np.uint8)
    return _unbatch(out, single)


def _hsv_adjust(image, hue_degrees=0.0, saturation_factor=1.0):
    import cv2

    hsv = cv2.cvtColor(_to_float(image), cv2.COLOR_RGB2HSV)  # H in [0, 360), S and V in [0, 1]
    if hue_degrees:
        hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hue_degrees), 360.0)
    if saturation_factor != 1.0:
        hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(saturation_factor), 0.0, 1.0)
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def rotate_hue(x, degrees):
    """Rotate the hue of every pixel by ``degrees`` in HSV (grey pixels are unchanged)."""
    return _map_images(x, lambda image: _hsv_adjust(image, hue_degrees=degrees))


def scale_saturation(x, factor):
    """Multiply the HSV saturation of every pixel by ``factor`` (clipped to 0..1)."""
    return _map_images(x, lambda image: _hsv_adjust(image, saturation_factor=factor))


def to_grayscale(x):
    """BT.601 luma in all three channels (a 3-channel grey image the model can still take)."""
    batch, single = as_batch(x)
    out = np.empty_like(batch)
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    for start in range(0, len(batch), _CHUNK):
        luma = np.clip(np.rint(batch[start : start + _CHUNK].astype(np.float32) @ weights), 0, 255)
        out[start : start + _CHUNK] = luma.astype(np.uint8)[..., None]
    return _unbatch(out, single)


# --------------------------------------------------------------------------------------------------
# Colour normalisation to a reference


def _check_space(space):
    if space not in NORMALISATION_SPACES:
        raise ValueError(f"unsupported colour reference space {space!r}; choose from {NORMALISATION_SPACES}")
    return space


def channel_statistics(image, space=NORMALISATION_SPACE):
    """Per-channel (mean, std) of an image's content pixels in ``space`` ("cielab" or "rgb", 0..255),
    each a float64 (3,) array."""
    values = rgb_to_lab(image) if _check_space(space) == "cielab" else image
    pixels = values[content_mask(image)].astype(np.float64)
    return pixels.mean(axis=0), pixels.std(axis=0)


def lab_statistics(image):
    """Per-channel (mean, std) of an image's content pixels in CIELAB."""
    return channel_statistics(image, "cielab")


@dataclass(frozen=True)
class ColourReference:
    """Target per-channel colour statistics for ``normalise_colour``; fit on training images."""

    mean: tuple  # per-channel means: (L, a, b) or (R, G, B)
    std: tuple  # per-channel standard deviations
    n_images: int = 0
    space: str = NORMALISATION_SPACE

    @classmethod
    def fit(cls, x_train, space=NORMALISATION_SPACE):
        """Average, over the training images, of each image's per-channel mean and std."""
        _check_space(space)
        batch, _ = as_batch(x_train)
        if not len(batch):
            raise ValueError("need at least one training image to fit a colour reference")
        means, stds = zip(*(channel_statistics(image, space) for image in batch))
        return cls(
            mean=tuple(float(v) for v in np.mean(means, axis=0)),
            std=tuple(float(v) for v in np.mean(stds, axis=0)),
            n_images=len(batch),
            space=space,
        )

    def to_dict(self):
        return {"space": self.space, "mean": list(self.mean), "std": list(self.std), "n_images": self.n_images}

    @classmethod
    def from_dict(cls, data):
        space = _check_space(data.get("space", NORMALISATION_SPACE))
        return cls(
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            n_images=int(data.get("n_images", 0)),
            space=space,
        )


def _match_statistics(pixels, reference):
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)
    target_mean, target_std = np.asarray(reference.mean), np.asarray(reference.std)
    scale = np.where(std < _STD_FLOOR, 1.0, target_std / np.maximum(std, _STD_FLOOR))
    return (pixels - mean) * scale + target_mean


def _normalise_one(image, reference):
    mask = content_mask(image)
    if reference.space == "rgb":
        out = image.copy()
        matched = _match_statistics(image[mask].astype(np.float64), reference)
        out[mask] = np.clip(np.rint(matched), 0, 255).astype(np.uint8)
        return out
    lab = rgb_to_lab(image)
    normalised = _match_statistics(lab[mask].astype(np.float64), reference)
    normalised[:, 0] = np.clip(normalised[:, 0], 0.0, 100.0)
    lab[mask] = normalised.astype(np.float32)
    out = lab_to_rgb(lab)
    out[~mask] = image[~mask]  # padding stays exactly as it was
    return out


def normalise_colour(x, reference):
    """Match each image's per-channel mean/std to ``reference``, in its space (module docstring)."""
    if isinstance(reference, dict):
        reference = ColourReference.from_dict(reference)
    return _map_images(x, lambda image: _normalise_one(image, reference))


def normalised_variant_name(reference):
    """The robustness variant a reference produces: "colour_normalised" (CIELAB) or "colour_normalised_rgb"."""
    return "colour_normalised" if reference.space == "cielab" else f"colour_normalised_{reference.space}"


def _as_references(reference):
    """None, one ColourReference/dict, or a list of them -> list of ColourReference."""
    if reference is None:
        return []
    items = reference if isinstance(reference, (list, tuple)) else [reference]
    return [ColourReference.from_dict(r) if isinstance(r, dict) else r for r in items]


# --------------------------------------------------------------------------------------------------
# The variants and the evaluation


def _fmt_factor(value):
    return f"{value:g}"


def variant_transforms(reference=None):
    """Ordered {variant name: function(uint8 batch) -> uint8 batch}. ``reference``: None, one
    ColourReference or a list of them (one normalised variant each, see normalised_variant_name)."""
    transforms = {}
    for factor in BRIGHTNESS_FACTORS:
        transforms[f"brightness_x{_fmt_factor(factor)}"] = lambda x, f=factor: adjust_brightness(x, f)
    for degrees in HUE_SHIFTS_DEGREES:
        transforms[f"hue_{degrees:+g}deg"] = lambda x, d=degrees: rotate_hue(x, d)
    for factor in SATURATION_FACTORS:
        transforms[f"saturation_x{_fmt_factor(factor)}"] = lambda x, f=factor: scale_saturation(x, f)
    for ref in _as_references(reference):
        transforms[normalised_variant_name(ref)] = lambda x, r=ref: normalise_colour(x, r)
    transforms["grayscale"] = to_grayscale
    return transforms


VARIANT_DESCRIPTIONS = {
    "original": "test images as prepared",
    "brightness_x0.85": "RGB x 0.85",
    "brightness_x1.15": "RGB x 1.15",
    "hue_+10deg": "hue +10 degrees (HSV)",
    "hue_-10deg": "hue -10 degrees (HSV)",
    "saturation_x0.7": "HSV saturation x 0.7",
    "saturation_x1.3": "HSV saturation x 1.3",
    "colour_normalised": "CIELAB mean/std matched to the training reference",
    "colour_normalised_rgb": "RGB mean/std (the baseline's six numbers) matched to the training reference",
    "grayscale": "BT.601 luma in 3 channels",
}


def _summary(probabilities, y, class_names):
    metrics = metrics_from_probabilities(probabilities, y, class_names)
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "per_class_recall": {name: metrics["per_class"][name]["recall"] for name in class_names},
        "confusion_matrix": metrics["confusion_matrix"],
    }


def evaluate_robustness(predict_fn, x, y, class_names, reference, variants=None, base_probabilities=None):
    """Accuracy and macro-F1 of ``predict_fn`` on ``x`` and on each colour variant of it.

    Args:
        predict_fn: function(uint8 batch (N, H, W, 3)) -> probabilities (N, K), columns in
            ``class_names`` order (e.g. ``lambda b: model.predict(b.astype("float32"))``).
        x, y: test images (uint8) and integer labels (indices into ``class_names``).
        reference: ColourReference (or its dict), or a list of them, fitted on the training split,
            for the colour-normalised variants; None leaves those variants out.
        variants: optional list of variant names to run (default: all of ``variant_transforms``).
        base_probabilities: ``predict_fn(x)`` when the caller already has it (saves one pass).

    Returns a JSON-able dict: n, class_names, reference, and "variants" {name: {description,
    accuracy, macro_f1, drop_accuracy_points, drop_macro_f1_points, changed_predictions (fraction
    of images whose predicted class differs from the original's), per_class_recall,
    confusion_matrix}}, starting with "original" (drops 0), plus "worst" (the variant with the
    largest accuracy drop).
    """
    references = _as_references(reference)
    x, _ = as_batch(x)
    y = np.asarray(y, dtype=np.int64)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    transforms = variant_transforms(references)
    if variants is not None:
        unknown = [name for name in variants if name not in transforms]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; choose from {list(transforms)}")
        transforms = {name: transforms[name] for name in variants}

    def checked(probabilities, n):
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.shape != (n, len(class_names)):
            raise ValueError(f"predict_fn returned shape {probabilities.shape}, expected ({n}, {len(class_names)})")
        return probabilities

    def predict(batch):
        return checked(predict_fn(batch), len(batch))

    base_probabilities = predict(x) if base_probabilities is None else checked(base_probabilities, len(x))
    base_predictions = base_probabilities.argmax(axis=1)
    original = _summary(base_probabilities, y, class_names)
    results = {
        "original": {
            "description": VARIANT_DESCRIPTIONS["original"],
            **original,
            "drop_accuracy_points": 0.0,
            "drop_macro_f1_points": 0.0,
            "changed_predictions": 0.0,
        }
    }
    for name, transform in transforms.items():
        probabilities = predict(transform(x))
        summary = _summary(probabilities, y, class_names)
        results[name] = {
            "description": VARIANT_DESCRIPTIONS.get(name, name),
            **summary,
            "drop_accuracy_points": round(100.0 * (original["accuracy"] - summary["accuracy"]), 4),
            "drop_macro_f1_points": round(100.0 * (original["macro_f1"] - summary["macro_f1"]), 4),
            "changed_predictions": float(np.mean(probabilities.argmax(axis=1) != base_predictions)) if len(y) else 0.0,
        }
    shifted = {name: r for name, r in results.items() if name != "original"}
    worst = max(shifted, key=lambda n: shifted[n]["drop_accuracy_points"]) if shifted else None
    return {
        "n": len(y),
        "class_names": list(class_names),
        "reference": references[0].to_dict() if len(references) == 1 else None,
        "references": [r.to_dict() for r in references],
        "variants": results,
        "worst": {"variant": worst, "drop_accuracy_points": shifted[worst]["drop_accuracy_points"]} if worst else None,
    }


def format_robustness_table(result):
    """Plain-text table: one row per variant with accuracy, macro-F1 and the drops in points."""
    header = ("Variant", "Accuracy", "Acc. drop", "Macro-F1", "F1 drop", "Changed")
    rows = [
        (
            name,
            f"{r['accuracy']:.2%}",
            f"{r['drop_accuracy_points']:+.1f}",
            f"{r['macro_f1']:.4f}",
            f"{r['drop_macro_f1_points']:+.1f}",
            f"{r['changed_predictions']:.1%}",
        )
        for name, r in result["variants"].items()
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))),
        "  ".join("-" * w for w in widths),
    ]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    lines.append(
        "Drops are in percentage points against the original images (positive = worse); "
        "'Changed' is the share of images whose predicted class changed."
    )
    return "\n".join(lines)

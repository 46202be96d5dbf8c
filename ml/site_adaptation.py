"""Test-time adaptation per site: map a site's colours onto the training split's, in CIELAB.

A referring site's stain batch, lamp and camera move every one of its images the same way. From a
site's own unlabelled images we estimate the mean and spread of L*, a* and b* over their content
pixels (padding excluded), and map each image channel by channel onto the training split's mean
and spread (Reinhard et al. 2001, with statistics pooled over the site instead of per image). No
labels and no retraining: the model stays as validated; only its input moves back towards what it
was trained on. Plain numpy/OpenCV, no Keras, no Django.
"""

from dataclasses import dataclass

import numpy as np

from .robustness import content_mask


@dataclass(frozen=True)
class LabStatistics:
    mean: tuple  # L*, a*, b*
    std: tuple

    def as_dict(self):
        return {"mean": list(self.mean), "std": list(self.std)}


def _lab(image):
    import cv2

    return cv2.cvtColor(np.asarray(image, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def lab_statistics(images):
    """LabStatistics over the content pixels of uint8 RGB images (N, H, W, 3) or a list of them."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for image in images:
        mask = content_mask(np.asarray(image, dtype=np.uint8))
        pixels = _lab(image)[mask].astype(np.float64)
        total += pixels.sum(axis=0)
        total_sq += np.square(pixels).sum(axis=0)
        count += len(pixels)
    if count == 0:
        raise ValueError("No content pixels to estimate colour statistics from.")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 1e-12))
    return LabStatistics(tuple(float(v) for v in mean), tuple(float(v) for v in std))


MODES = ("reinhard", "chroma-mean")


def adapt(image, site, reference, mode="reinhard"):
    """``image`` (uint8 RGB) with its site's LabStatistics mapped onto ``reference``'s; padding kept.

    ``reinhard``: every channel's mean and spread; ``chroma-mean``: only the mean of a* and b*
    (a colour cast moved back; lightness and contrast left as the site sends them)."""
    import cv2

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    image = np.asarray(image, dtype=np.uint8)
    mask = content_mask(image)
    lab = _lab(image)
    if mode == "reinhard":
        scale = np.asarray(reference.std) / np.asarray(site.std)
        shift = np.asarray(reference.mean) - np.asarray(site.mean) * scale
    else:
        scale = np.ones(3)
        shift = np.asarray(reference.mean) - np.asarray(site.mean)
        shift[0] = 0.0
    mapped = lab * scale + shift
    mapped[..., 0] = np.clip(mapped[..., 0], 0.0, 100.0)
    rgb = cv2.cvtColor(mapped.astype(np.float32), cv2.COLOR_Lab2RGB)
    out = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    out[~mask] = image[~mask]
    return out

"""Synthetic images and data folders for the tests (nothing from the real data set)."""

import numpy as np
from PIL import Image

# Dominant colour per class folder: a trivially separable synthetic data set.
CLASS_COLOURS = {
    "Benign": (200, 40, 40),
    "Early": (40, 180, 40),
    "Pre": (40, 40, 200),
    "Pro": (200, 200, 40),
}


def make_cell_image(colour, size=32, seed=0):
    """A noisy patch of ``colour`` with a darker random disc, like a stained cell on a background."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float64)
    image = base + rng.normal(0, 12, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    radius = rng.uniform(size * 0.15, size * 0.3)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    image[disc] *= 0.6
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")


def write_dataset(root, per_class=12, size=32, ext=".png", folders=None, start=1):
    """Create <root>/<Folder>/IMG-<number>.<ext> images; returns root."""
    folders = folders or list(CLASS_COLOURS)
    for f_index, folder in enumerate(folders):
        colour = CLASS_COLOURS.get(folder, (128, 128, 128))
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = make_cell_image(colour, size=size, seed=1000 * f_index + i)
            image.save(root / folder / f"IMG-{folder}-{start + i:03d}{ext}")
    return root

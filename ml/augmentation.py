"""Random augmentation as Keras preprocessing layers, placed at the start of the model.

The random layers run inside layers.TrainingOnlyAugmentation, which is the identity unless called
with training=True (plain Keras random layers default to *augmenting* when no training flag is
given, e.g. ``model(x)``). So the saved model serves deterministic predictions while ``fit`` sees
augmented images. They operate on
the raw 0..255 float RGB input (value_range=(0, 255)), before the architecture's normalisation.
Only backend-agnostic keras.layers are used, so this runs under TensorFlow, JAX and PyTorch.
The shear layer is a registered subclass (layers.SymmetricRandomShear) because Keras 3.15's own
RandomShear cannot be loaded back from a saved model.
"""

import keras

from .layers import RandomStainJitter, SymmetricRandomShear, TrainingOnlyAugmentation
from .site_augmentation import build_site_layers

# Study settings (Keras ImageDataGenerator-style shear 0.2, zoom 0.2, horizontal flip), plus
# vertical flip and rotation (a cell on a smear has no "up"), plus colour/stain jitter because
# stain and background colour vary strongly between patients and labs.
BASE_SHEAR = 0.2
BASE_ZOOM = 0.2
BASE_ROTATION = 0.5  # fraction of a full turn either way: any angle
BASE_BRIGHTNESS = 0.15
BASE_CONTRAST = 0.2
BASE_SATURATION = 0.2  # RandomSaturation factor range is centred on 0.5 (see below)
BASE_HUE = 0.04  # small: hue carries stain information we do not want to destroy


def build_augmentation(strength=1.0, color=True, seed=None, name="augmentation", grayscale=0.0, stain=0.0, site=()):
    """Return the random layers wrapped in a TrainingOnlyAugmentation, or None when ``strength``
    is 0 (augmentation off).

    ``strength`` scales every geometric and colour range linearly (1.0 = the settings above);
    ``color=False`` keeps the geometric part only. ``grayscale``: the probability that a training
    image is turned to gray (all colour taken away), so the model must also learn from shape and
    texture; 0 leaves the layer out (models trained before it load and behave as they did).
    ``stain``: sigma of the per-image stain-amount jitter in optical density (RandomStainJitter;
    0.05 is Tellez et al.'s "HED-light"), so the model meets other labs' stains; 0 leaves it out.
    ``site``: names of ml.site_augmentation.SITE_AUGMENTATIONS (white balance, chroma, defocus, scale,
    noise, JPEG) to add after the colour layers; empty leaves them out.
    """
    if not 0.0 <= float(grayscale) <= 1.0:
        raise ValueError(f"grayscale must be a probability between 0 and 1, got {grayscale!r}")
    if not 0.0 <= float(stain) < 1.0:
        raise ValueError(f"stain jitter must be between 0 and 1, got {stain!r}")
    if strength is None or strength <= 0:
        return None
    if seed is None:
        seeds = [None] * 10
    else:
        seeds = [seed + i for i in range(10)]  # distinct per layer, reproducible per seed
    s = float(strength)
    fill = "reflect"  # mirror the smear background rather than inventing black corners
    layers = [
        keras.layers.RandomFlip("horizontal_and_vertical", seed=seeds[0], name="flip"),
        keras.layers.RandomRotation(min(BASE_ROTATION * s, 0.5), fill_mode=fill, seed=seeds[1], name="rotation"),
        SymmetricRandomShear(
            x_factor=BASE_SHEAR * s, y_factor=BASE_SHEAR * s, fill_mode=fill, seed=seeds[2], name="shear"
        ),
        keras.layers.RandomZoom(min(BASE_ZOOM * s, 0.9), fill_mode=fill, seed=seeds[3], name="zoom"),
    ]
    if color:
        saturation = min(BASE_SATURATION * s, 0.49)
        layers += [
            keras.layers.RandomBrightness(
                min(BASE_BRIGHTNESS * s, 1.0), value_range=(0, 255), seed=seeds[4], name="brightness"
            ),
            keras.layers.RandomContrast(
                min(BASE_CONTRAST * s, 1.0), value_range=(0, 255), seed=seeds[5], name="contrast"
            ),
            # factor (lo, hi) in [0, 1]; 0.5 leaves saturation unchanged.
            keras.layers.RandomSaturation(
                (0.5 - saturation, 0.5 + saturation), value_range=(0, 255), seed=seeds[6], name="saturation"
            ),
            keras.layers.RandomHue(min(BASE_HUE * s, 1.0), value_range=(0, 255), seed=seeds[7], name="hue"),
        ]
    if stain > 0:
        layers.append(RandomStainJitter(float(stain), seed=seeds[9], name="stain"))
    layers += build_site_layers(site, seed=seed)
    if grayscale > 0:
        layers.append(keras.layers.RandomGrayscale(factor=float(grayscale), seed=seeds[8], name="grayscale"))
    if keras.backend.backend() == "jax":
        # Keras marks rotation/shear/zoom supports_jit=False because TensorFlow's XLA lacks their
        # transform op; that silently turns off jax.jit for the whole train step (much slower on
        # GPU). Their JAX implementations compile fine (checked with jax 0.10 on CPU).
        for layer in layers:
            layer.supports_jit = True
    return TrainingOnlyAugmentation(layers, name=name)

"""One builder per architecture; every model has the same outer contract.

Input: float32 RGB 0..255, shape (image_size, image_size, 3) — exactly what images.prepare_image
produces (as uint8). Inside the model, in order:

    augmentation (random layers, identity at inference) -> normalisation (Keras layers, the range
    the architecture expects) -> backbone -> head (softmax over CLASS_NAMES)

Keeping normalisation in the graph means a saved .keras file carries its own preprocessing and the
serving code cannot drift from training. Only keras.* APIs are used (no tf.*), so the same code
trains under JAX or PyTorch and serves under TensorFlow. No Lambda layers: models load with
safe_mode=True.
"""

from dataclasses import dataclass

import keras

from .augmentation import build_augmentation
from .classes import CLASS_NAMES
from .layers import CaffeNormalization, PerImageColourStandardization, PerImageLabStandardization

# Keras applications default to BatchNormalization momentum 0.99 (MobileNetV2: 0.999). Trained
# from scratch on ~2k images that is too slow for the moving statistics to follow the weights:
# MobileNetV2 stayed at chance accuracy in validation for many epochs here. 0.9 fixes it.
BATCHNORM_MOMENTUM = 0.9
NUM_CLASSES = len(CLASS_NAMES)


@dataclass(frozen=True)
class ArchitectureSpec:
    name: str
    # "unit" ([0, 1]), "symmetric" ([-1, 1]) or "caffe" (BGR minus ImageNet mean, unscaled).
    normalisation: str  # used when training from scratch
    pretrained_normalisation: str  # used with ImageNet weights: what those weights were trained on
    default_image_size: int
    min_image_size: int
    uses_backbone_weights: bool


# ResNet50/VGG19 ImageNet weights expect "caffe" inputs (values around +-128). From scratch that
# scale saturates an untrained VGG19's softmax (measured: first prediction 1.0 vs 1e-12), so
# without weights they get [-1, 1] like MobileNetV2. The choice is saved inside the model.
ARCHITECTURES = {
    "convnet": ArchitectureSpec("convnet", "unit", "unit", 224, 8, False),
    "convnet_bn": ArchitectureSpec("convnet_bn", "unit", "unit", 224, 16, False),
    "mobilenetv2": ArchitectureSpec("mobilenetv2", "symmetric", "symmetric", 224, 32, True),
    "resnet50": ArchitectureSpec("resnet50", "symmetric", "caffe", 224, 32, True),
    "vgg19": ArchitectureSpec("vgg19", "symmetric", "caffe", 224, 32, True),
}
ARCHITECTURE_NAMES = tuple(ARCHITECTURES)

# Adam's initial learning rate when none is given. VGG19 from scratch has no normalisation layers:
# at 1e-3 one step can push its softmax into saturation (the same class for every input); its runs
# on the real data trained at 1e-4.
DEFAULT_LEARNING_RATE = 1e-3
LEARNING_RATES = {"vgg19": 1e-4}


def default_learning_rate(architecture):
    return LEARNING_RATES.get(architecture, DEFAULT_LEARNING_RATE)


NORMALISATION_DESCRIPTIONS = {
    "unit": "Rescaling(1/255): [0, 1]",
    "symmetric": "Rescaling(1/127.5, offset=-1): [-1, 1]",
    "caffe": "CaffeNormalization: RGB->BGR, minus ImageNet BGR mean (103.939, 116.779, 123.68)",
    "per_image": "PerImageColourStandardization: each image's R, G, B to mean 0, std 1 over its content "
    "pixels (the model never sees the image's average colour)",
    "per_image_lab": "PerImageLabStandardization: each image's CIELAB L, a, b to mean 0, std 1 over its "
    "content pixels (Reinhard's colour normalisation; no colour cast or saturation to learn)",
    "per_image_balanced_lab": "PerImageLabStandardization(balance=True): each image's R, G, B scaled to "
    "one mean (grey world), then its CIELAB L, a, b to mean 0, std 1 over its content pixels",
}
NORMALISATIONS = tuple(NORMALISATION_DESCRIPTIONS)


def _normalisation_layer(kind):
    if kind == "unit":
        return keras.layers.Rescaling(1.0 / 255, name="normalise")
    if kind == "symmetric":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")
    if kind == "caffe":
        return CaffeNormalization(name="normalise")
    if kind == "per_image":
        return PerImageColourStandardization(name="normalise")
    if kind in ("per_image_lab", "per_image_balanced_lab"):
        return PerImageLabStandardization(balance=kind == "per_image_balanced_lab", name="normalise")
    raise ValueError(f"unknown normalisation {kind!r}")


def _study_convnet(x, num_classes):
    """The study's custom ConvNet: 4 Conv2D, 3 MaxPooling, 2 Dropout, Flatten, Dense softmax.

    Filter counts (32/64/128/128), 3x3 kernels with 'same' padding and dropout rates 0.25/0.5 are
    our reading of that description; the layer sequence is the study's.
    """
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.MaxPooling2D(2, name="pool3")(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="conv4")(x)
    x = keras.layers.Dropout(0.25, name="dropout1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.5, name="dropout2")(x)
    return keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)


def _convnet_bn(x, num_classes):
    """Improved variant: Conv-BN-ReLU blocks and global average pooling (far fewer parameters
    than Flatten+Dense at 224 px, and less tied to where in the frame the cell sits)."""
    for i, filters in enumerate((32, 64, 128, 256), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=BATCHNORM_MOMENTUM, name=f"bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    return keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)


def _application_backbone(architecture, image_size, weights_path):
    constructors = {
        "mobilenetv2": keras.applications.MobileNetV2,
        "resnet50": keras.applications.ResNet50,
        "vgg19": keras.applications.VGG19,
    }
    # weights_path: a local "notop" ImageNet weights file (.h5 / .weights.h5); nothing is downloaded.
    return constructors[architecture](
        input_shape=(image_size, image_size, 3),
        include_top=False,
        weights=str(weights_path) if weights_path else None,
    )


def he_initialise_convolutions(model, seed=None):
    """Redraw every convolution kernel of ``model`` from He-normal; returns how many.

    keras.applications.VGG19 draws its kernels from Glorot-uniform, which is fine under ImageNet
    weights but not from scratch: through 16 ReLU convolutions without normalisation the signal's
    variance roughly halves at each layer, the head sees constants and training sits at chance
    (measured on the real data: loss ln 4 = 1.386 for three epochs at learning rate 1e-3, and at
    1e-4). He initialisation keeps the variance through ReLU layers (He et al. 2015 trained plain
    networks this deep from scratch that way). Biases stay zero.
    """
    count = 0
    for layer in iter_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            # One seed per layer: a seeded initializer repeats its values for the same shape.
            initializer = keras.initializers.HeNormal(seed=None if seed is None else seed + 1000 + count)
            layer.kernel.assign(initializer(tuple(layer.kernel.shape)))
            count += 1
    return count


def set_batchnorm_momentum(model, momentum=BATCHNORM_MOMENTUM):
    """Set ``momentum`` on every BatchNormalization layer, nested models included; returns count.

    The attribute is read at each training step and saved in the layer config, so this must run
    before the first fit/compile trace and it persists through save/load.
    """
    count = 0
    for layer in iter_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            count += 1
    return count


def iter_layers(model):
    """Every layer of ``model``, descending into nested models (backbones) depth first."""
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from iter_layers(layer)


def build_model(
    architecture,
    image_size=224,
    num_classes=NUM_CLASSES,
    augment=True,
    weights_path=None,
    seed=None,
    augment_strength=1.0,
    augment_color=True,
    normalisation=None,
    augment_grayscale=0.0,
    augment_stain=0.0,
    augment_site=(),
):
    """Build an uncompiled Keras model for ``architecture`` (one of ARCHITECTURE_NAMES).

    ``augment``: include the training-only augmentation block. ``weights_path``: optional local
    ImageNet "notop" weights for the backbone (mobilenetv2/resnet50/vgg19 only). ``seed``: when
    given, calls keras.utils.set_random_seed(seed) first so initial weights are reproducible.
    ``normalisation``: one of NORMALISATIONS to override the architecture's own; "per_image"
    takes each image's colour statistics away from the model (see PerImageColourStandardization).
    ``augment_grayscale``: probability of a gray training image; ``augment_stain``: sigma of the
    stain-amount jitter; ``augment_site``: names of site augmentations (all augmentation.build_augmentation).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURE_NAMES)}")
    spec = ARCHITECTURES[architecture]
    if image_size < spec.min_image_size:
        raise ValueError(f"{architecture} needs image_size >= {spec.min_image_size}, got {image_size}")
    if weights_path and not spec.uses_backbone_weights:
        raise ValueError(f"{architecture} has no pretrained backbone; weights_path is not supported")
    if seed is not None:
        keras.utils.set_random_seed(seed)

    inputs = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
    x = inputs
    if augment:
        augmentation = build_augmentation(
            strength=augment_strength,
            color=augment_color,
            seed=seed,
            grayscale=augment_grayscale,
            stain=augment_stain,
            site=augment_site,
        )
        if augmentation is not None:
            x = augmentation(x)
    if normalisation is None:
        normalisation = spec.pretrained_normalisation if weights_path else spec.normalisation
    x = _normalisation_layer(normalisation)(x)
    if architecture == "convnet":
        outputs = _study_convnet(x, num_classes)
    elif architecture == "convnet_bn":
        outputs = _convnet_bn(x, num_classes)
    else:
        backbone = _application_backbone(architecture, image_size, weights_path)
        if architecture == "vgg19" and not weights_path:
            he_initialise_convolutions(backbone, seed)
        x = backbone(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(0.3, name="dropout")(x)
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=architecture)
    set_batchnorm_momentum(model, BATCHNORM_MOMENTUM)
    return model


def normalisation_of(model):
    """Which normalisation ("unit", "symmetric", "caffe") a built or loaded model contains."""
    layer = model.get_layer("normalise")
    if isinstance(layer, CaffeNormalization):
        return "caffe"
    if isinstance(layer, PerImageColourStandardization):
        return "per_image"
    if isinstance(layer, PerImageLabStandardization):
        return "per_image_balanced_lab" if layer.balance else "per_image_lab"
    return "symmetric" if abs(float(layer.offset) + 1.0) < 1e-9 else "unit"


def describe_preprocessing(model):
    """What happens to pixels before the backbone, read from the model itself (for metadata)."""
    from .images import PREPROCESSING_DESCRIPTION

    description = dict(PREPROCESSING_DESCRIPTION)
    description["in_model_normalisation"] = NORMALISATION_DESCRIPTIONS[normalisation_of(model)]
    description["augmentation"] = "training only (Keras random layers inside the model)"
    return description

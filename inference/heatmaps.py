"""Where the model looked: class activation maps for the predicted class, stored as PNG overlays.

- ``GradCam``: Grad-CAM (Selvaraju et al.) on the last spatial feature map of the model, for the
  pre-softmax score of the class. TensorFlow-specific (tf.GradientTape, tf.function): that is
  acceptable in serving code, which always runs the TensorFlow backend; training code stays
  backend-agnostic.
- ``occlusion_map``: gradient-free fallback for any backend or a model Grad-CAM cannot take apart:
  how much the class probability drops when each cell of a grid is greyed out.
- ``overlay_png``: the map cropped to the real image (``prepare_image`` pads to a square), resized
  to the image's aspect ratio, coloured (blue → red) with transparency growing with intensity.

Everything here is Django-free; Keras/TensorFlow are imported only when a map is computed (inside a
worker child process, never in a parent that forks).
"""
import io

import numpy as np
from PIL import Image

OVERLAY_MAX_SIDE = 384


# --- Geometry shared with training.ml.images.resize_with_pad -----------------------------------


def content_box(original_size, size):
    """(left, top, width, height) of the image inside the ``size`` square prepare_image produces."""
    width, height = original_size
    if (width, height) == (size, size) or width < 1 or height < 1:
        return 0, 0, size, size
    scale = size / max(width, height)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    return (size - new_w) // 2, (size - new_h) // 2, new_w, new_h


def _normalise(cam):
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    return cam / peak if peak > 0 else np.zeros_like(cam)


def _colour(cam):
    """HxW in [0, 1] → HxWx4 uint8: a blue-cyan-yellow-red ramp, alpha rising with intensity."""
    x = np.clip(cam, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    a = np.clip(x * 1.25, 0.0, 1.0) * 0.9
    return (np.stack([r, g, b, a], axis=-1) * 255.0 + 0.5).astype(np.uint8)


def overlay_png(cam, input_size, original_size, max_side=OVERLAY_MAX_SIDE):
    """Turn a class activation map over the model input into a PNG laid exactly over the image.

    ``cam``: 2-D map over the ``input_size`` square (any resolution); ``original_size``: (width,
    height) of the displayed image. Returns PNG bytes with the image's aspect ratio.
    """
    cam = _normalise(cam)
    full = Image.fromarray(cam.astype(np.float32)).resize((input_size, input_size), Image.Resampling.BILINEAR)
    left, top, width, height = content_box(original_size, input_size)
    cropped = full.crop((left, top, left + width, top + height))
    ow, oh = original_size
    scale = min(1.0, max_side / max(ow, oh)) if max(ow, oh) > 0 else 1.0
    target = (max(1, round(ow * scale)), max(1, round(oh * scale)))
    resized = np.asarray(cropped.resize(target, Image.Resampling.BILINEAR), dtype=np.float32)
    buffer = io.BytesIO()
    Image.fromarray(_colour(_normalise(resized))).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


# --- Grad-CAM (TensorFlow) ----------------------------------------------------------------------


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):
        return None


def find_feature_layer(model):
    """The last top-level layer with a spatial output (N, H>1, W>1, C>3): a conv block or a backbone."""
    for layer in reversed(model.layers):
        shape = _output_shape(layer)
        if shape and len(shape) == 4 and (shape[1] or 0) > 1 and (shape[2] or 0) > 1 and (shape[3] or 0) > 3:
            return layer
    return None


class GradCamUnavailable(Exception):
    pass


def _grad_model(model, feature_layer, head, use_logits):
    """A model mapping the input to (feature map, head input or output).

    A top-level layer's symbolic output can be used directly. A nested backbone (MobileNetV2,
    ResNet50, VGG19 as one layer) cannot: its ``.output`` belongs to its own inner graph. Then the
    top-level chain is called again on a fresh input (same layers, same weights) and accepted only
    if it reproduces the model's predictions.
    """
    import keras
    import numpy as np

    try:
        return keras.Model(model.inputs, [feature_layer.output, head.input if use_logits else model.outputs[0]])
    except (ValueError, AttributeError):
        pass
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    spec = model.inputs[0]
    inputs = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype)
    x, features, before_head = inputs, None, None
    try:
        for layer in layers:
            if layer is head:
                before_head = x
            x = layer(x)
            if layer is feature_layer:
                features = x
        chain = keras.Model(inputs, x)
        probe = np.random.default_rng(0).uniform(0, 255, (1, *spec.shape[1:])).astype("float32")
        same = np.allclose(chain.predict_on_batch(probe), model.predict_on_batch(probe), atol=1e-4)
    except Exception as exc:  # noqa: BLE001 - not a simple chain of layers
        raise GradCamUnavailable(f"Cannot take the model apart for Grad-CAM: {exc}") from exc
    if features is None or before_head is None or not same:
        raise GradCamUnavailable("The model is not a simple chain of layers; Grad-CAM is not available.")
    return keras.Model(inputs, [features, before_head if use_logits else x])


class GradCam:
    """Grad-CAM for one loaded model, compiled once (tf.function) and reused for every image."""

    def __init__(self, model):
        import keras

        if keras.backend.backend() != "tensorflow":
            raise GradCamUnavailable(f"Grad-CAM needs the TensorFlow backend, not {keras.backend.backend()}.")
        import tensorflow as tf

        feature_layer = find_feature_layer(model)
        if feature_layer is None:
            raise GradCamUnavailable("The model has no spatial feature map to explain.")
        head = model.layers[-1]
        # Explain the pre-softmax score when the head is a softmax Dense (no saturation at p ≈ 1).
        use_logits = (
            isinstance(head, keras.layers.Dense)
            and getattr(head.activation, "__name__", "") == "softmax"
        )
        grad_model = _grad_model(model, feature_layer, head, use_logits)
        kernel, bias = (head.kernel, head.bias) if use_logits else (None, None)
        self.layer_name = feature_layer.name

        @tf.function(reduce_retracing=True)
        def compute(batch, class_index):
            with tf.GradientTape() as tape:
                features, last = grad_model(batch, training=False)
                tape.watch(features)
                if use_logits:
                    scores = tf.matmul(last, kernel)
                    if bias is not None:
                        scores = scores + bias
                else:
                    scores = last
                score = tf.gather(scores, class_index, axis=1)
            grads = tape.gradient(score, features)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))[0]

        self._compute = compute

    def __call__(self, batch, class_index):
        import tensorflow as tf

        cam = self._compute(tf.convert_to_tensor(batch, dtype=tf.float32), tf.constant(int(class_index)))
        return _normalise(cam.numpy())


# --- Occlusion (any backend) --------------------------------------------------------------------


def occlusion_map(predict, image, class_index, grid=7, batch_size=16, fill=127.0):
    """Drop of the class probability when each of ``grid`` x ``grid`` cells is greyed out.

    ``predict``: float32 (N, H, W, 3) → (N, classes) probabilities; ``image``: (H, W, 3) uint8.
    """
    base_image = image.astype(np.float32)
    height, width = base_image.shape[:2]
    ys = np.linspace(0, height, grid + 1).round().astype(int)
    xs = np.linspace(0, width, grid + 1).round().astype(int)
    variants = []
    for i in range(grid):
        for j in range(grid):
            occluded = base_image.copy()
            occluded[ys[i]:ys[i + 1], xs[j]:xs[j + 1], :] = fill
            variants.append(occluded)
    base = float(np.asarray(predict(base_image[None]))[0, class_index])
    drops = []
    for start in range(0, len(variants), batch_size):
        probs = np.asarray(predict(np.stack(variants[start:start + batch_size])))
        drops.extend(base - probs[:, class_index])
    return _normalise(np.asarray(drops, dtype=np.float32).reshape(grid, grid))

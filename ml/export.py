"""Serving export: the SAME trained Keras model run by a faster runtime, verified before use.

Serving only (inference workers, benchmarks); nothing here is used for training, so TensorFlow
APIs (tf.function, tf.GradientTape, the TFLite converter and interpreter) are allowed. No Django.

What is exported is one *serving graph* per model: a single forward pass that returns

    probabilities  (1, K)   the model's softmax output (what ``model.predict_on_batch`` returns)
    cam            (1, h, w) the Grad-CAM map of the top class on the last spatial feature map
    features       (1, D)   the head's input (penultimate features, for the OOD score), when the
                            head is a softmax Dense; the same pass, so the score costs no second one

Grad-CAM needs the gradient of the class score with respect to the feature map; that gradient
only runs back through the head (pooling + dense), so the map costs almost nothing on top of the
forward pass that gives the probabilities (before, serving ran a second forward pass for it). A
model whose feature map cannot be found gets a probabilities-only graph (``explains`` False).

Runtimes (``load_serving``):

- ``tflite``: the graph converted to TensorFlow Lite (float32, no quantisation; XNNPACK on CPU),
  about 2-3x faster than Keras for one image on CPU. The interpreter of the ``ai_edge_litert``
  package (LiteRT) is used when it is installed, else ``tf.lite.Interpreter``.
- ``keras``: the same graph as a TensorFlow function (the fallback, always available).

A converted model is used only if it reproduces the Keras model: on smear-like probe images (plus
any real images the caller passes) the probabilities must match ``predict_on_batch`` within
``tolerance`` (max abs diff, default 1e-4) and the Grad-CAM maps must match the TensorFlow graph's;
otherwise the export is refused (the refusal is recorded, so it is not retried by every process)
and serving falls back to Keras. The check runs at export time AND every time a cached file is
loaded, so a stale or altered cache file can never serve.

Cache: beside the model file, keyed by the model's sha256 (the file's bytes, not its name):

    <model dir>/.serving/<sha256>.tflite    the converted graph
    <model dir>/.serving/<sha256>.json      what was verified (diffs, versions, the file's sha256)

``cache_dir`` overrides the folder (e.g. when the model folder is read-only). Files are written
atomically; a lock file keeps concurrent worker processes from converting the same model twice.
"""

import contextlib
import datetime
import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

EXPORT_FORMAT = 2  # 2: the penultimate features are a third output
DEFAULT_TOLERANCE = 1e-4
# Grad-CAM maps are compared relative to their peak (they are normalised before display), and so
# are the penultimate features.
CAM_TOLERANCE = 1e-3
FEATURE_TOLERANCE = 1e-3
CACHE_FOLDER = ".serving"
RUNTIMES = ("auto", "tflite", "keras")


class ExportError(Exception):
    """The model cannot be exported, or its export does not reproduce it; the message says why."""


class GradCamUnavailable(Exception):
    """The model has no spatial feature map that Grad-CAM can explain, or cannot be taken apart."""


# --------------------------------------------------------------------------------------------------
# Probe images: what the export is checked on


def smear_like_images(size, count=4, seed=0):
    """``count`` (size, size, 3) uint8 images that look like stained blood smear crops.

    A pale pink background with noise, a few pale red cells, one or two dark purple nuclei with
    texture; the last image is letterboxed with black bars as ``prepare_image`` pads non-square
    uploads. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    for n in range(count):
        background = np.array([226, 196, 206], dtype=np.float32) + rng.normal(0, 6, 3)
        image = np.broadcast_to(background, (size, size, 3)).copy()
        image += rng.normal(0, 5, (size, size, 3))
        for _ in range(int(rng.integers(4, 9))):  # red cells: pale discs with a paler centre
            cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0.06, 0.12) * size
            d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (r * r)
            disc = d2 < 1.0
            image[disc] = image[disc] * 0.55 + np.array([214, 120, 140], dtype=np.float32) * 0.45
            image[d2 < 0.25] += 12
        for _ in range(int(rng.integers(1, 3))):  # lymphoblasts: dark purple, textured nuclei
            cy, cx = rng.uniform(0.25, 0.75, 2) * size
            r = rng.uniform(0.12, 0.22) * size
            d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (r * r)
            cytoplasm = d2 < 1.4
            image[cytoplasm] = image[cytoplasm] * 0.5 + np.array([170, 150, 200], dtype=np.float32) * 0.5
            nucleus = d2 < 1.0
            texture = rng.normal(0, 14, (int(nucleus.sum()), 3))
            image[nucleus] = np.array([92, 48, 128], dtype=np.float32) + texture
        if n == count - 1 and count > 1:  # letterboxed, as prepare_image pads a wide upload
            bar = size // 6
            image[:bar] = 0
            image[size - bar :] = 0
        images[n] = np.clip(image, 0, 255).astype(np.uint8)
    return images


# --------------------------------------------------------------------------------------------------
# The serving graph (TensorFlow)


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


def _head_uses_logits(head):
    import keras

    return isinstance(head, keras.layers.Dense) and getattr(head.activation, "__name__", "") == "softmax"


def grad_model(model, feature_layer, head, use_logits):
    """A model mapping the input to (feature map, head input or output).

    A top-level layer's symbolic output can be used directly. A nested backbone (MobileNetV2,
    ResNet50, VGG19 as one layer) cannot: its ``.output`` belongs to its own inner graph. Then the
    top-level chain is called again on a fresh input (same layers, same weights) and accepted only
    if it reproduces the model's predictions.
    """
    import keras

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


def _variables_holder(model):
    """A tf.Module holding the model's TensorFlow variables, for the TFLite converter to freeze.

    Given the Keras model itself, the converter does not find every Keras 3 variable: they stay
    READ_VARIABLE ops with no value and the converted graph returns garbage (NaN). The underlying
    tf.Variable objects, tracked by a plain module, are all frozen into constants.
    """
    import tensorflow as tf

    holder = tf.Module()
    holder.weights = [getattr(variable, "value", variable) for variable in model.variables]
    return holder


class ServingGraph:
    """One forward pass: probabilities, and the Grad-CAM map of the top class when ``explains``.

    ``function``: a tf.function of a float32 (1, S, S, 3) batch returning (probabilities, cam) or
    (probabilities,). ``gradcam_cam(batch, class_index)`` computes the map of any class (used by
    the tests and by callers that want another class than the top one).
    """

    def __init__(self, model, *, with_cam=True):
        import keras
        import tensorflow as tf

        if keras.backend.backend() != "tensorflow":
            raise ExportError(f"Serving export needs the TensorFlow backend, not {keras.backend.backend()}.")
        self.model = model
        spec = model.inputs[0]
        self.input_size = int(spec.shape[1])
        self.num_classes = int(model.outputs[0].shape[-1])
        self.explains = False
        self.feature_size = 0  # D when the graph also returns the penultimate features
        self.layer_name = ""
        self.unavailable_reason = ""
        signature = [tf.TensorSpec([1, self.input_size, self.input_size, 3], tf.float32, name="images")]
        parts = None
        if with_cam:
            try:
                parts = self._gradcam_parts(model)
            except GradCamUnavailable as exc:
                self.unavailable_reason = str(exc)
        if parts is None:

            @tf.function(input_signature=signature)
            def serve(images):
                return (model(images, training=False),)

            self.function = serve
            self._trackable = _variables_holder(model)
            return

        explained, use_logits, kernel, bias = parts
        self.explains = True
        # With a softmax Dense head, ``last`` is the head's input: the penultimate features.
        self.feature_size = int(kernel.shape[0]) if use_logits and int(kernel.shape[0]) != self.num_classes else 0

        def scores_and_probabilities(last):
            if not use_logits:
                return last, last
            logits = tf.matmul(last, kernel)
            if bias is not None:
                logits = logits + bias
            return logits, tf.nn.softmax(logits, axis=-1)

        def cam_of(features, grads):
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))

        @tf.function(input_signature=signature)
        def serve(images):
            with tf.GradientTape() as tape:
                features, last = explained(images, training=False)
                tape.watch(features)
                scores, probabilities = scores_and_probabilities(last)
                top = tf.argmax(scores, axis=-1, output_type=tf.int32)
                score = tf.gather(scores, top, axis=1, batch_dims=1)
            grads = tape.gradient(score, features)
            if self.feature_size:
                return probabilities, cam_of(features, grads), last
            return probabilities, cam_of(features, grads)

        @tf.function(reduce_retracing=True)
        def class_cam(images, class_index):
            with tf.GradientTape() as tape:
                features, last = explained(images, training=False)
                tape.watch(features)
                scores, _ = scores_and_probabilities(last)
                score = tf.gather(scores, class_index, axis=1)
            grads = tape.gradient(score, features)
            return cam_of(features, grads)[0]

        self.function = serve
        self._class_cam = class_cam
        self._trackable = _variables_holder(model)

    def _gradcam_parts(self, model):
        feature_layer = find_feature_layer(model)
        if feature_layer is None:
            raise GradCamUnavailable("The model has no spatial feature map to explain.")
        head = model.layers[-1]
        # Explain the pre-softmax score when the head is a softmax Dense (no saturation at p ≈ 1).
        use_logits = _head_uses_logits(head)
        explained = grad_model(model, feature_layer, head, use_logits)
        self.layer_name = feature_layer.name
        kernel, bias = (head.kernel, head.bias) if use_logits else (None, None)
        return explained, use_logits, kernel, bias

    def __call__(self, batch):
        """(probabilities (K,), cam (h, w) or None) of one image batch (1, S, S, 3) float32."""
        return self.run(batch)[:2]

    def run(self, batch):
        """(probabilities (K,), cam (h, w) or None, features (D,) or None) of a (1, S, S, 3) batch."""
        import tensorflow as tf

        outputs = self.function(tf.convert_to_tensor(batch, dtype=tf.float32))
        probabilities = outputs[0].numpy()[0]
        cam = outputs[1].numpy()[0] if self.explains else None
        features = outputs[2].numpy()[0] if self.feature_size else None
        return probabilities, cam, features

    def class_cam(self, batch, class_index):
        """Grad-CAM map (h, w) of ``class_index`` for a (1, S, S, 3) batch (explaining graphs only)."""
        import tensorflow as tf

        if not self.explains:
            raise GradCamUnavailable(self.unavailable_reason or "This graph has no Grad-CAM.")
        cam = self._class_cam(tf.convert_to_tensor(batch, dtype=tf.float32), tf.constant(int(class_index)))
        return cam.numpy()

    def convert_to_tflite(self):
        """The graph as a TFLite flatbuffer (float32, built-in ops only); raises ExportError."""
        import tensorflow as tf

        try:
            converter = tf.lite.TFLiteConverter.from_concrete_functions(
                [self.function.get_concrete_function()], self._trackable
            )
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return converter.convert()
        except Exception as exc:  # noqa: BLE001 - any converter failure refuses the export
            raise ExportError(f"TFLite conversion failed: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# Runtimes


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter  # LiteRT, when installed

        return Interpreter, "litert"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite"


class KerasServing:
    """The fallback runtime: the serving graph as a TensorFlow function, plus the Keras model.

    ``fused``: the graph's probabilities were checked against ``predict_on_batch`` (one pass per
    image). Unchecked, or if they differ, the probabilities come from ``predict_on_batch`` and the
    map from a separate Grad-CAM pass (two passes, always right).
    """

    runtime = "keras"

    def __init__(self, model, graph=None, *, fallback_reason="", fused=False):
        self.model = model
        self.graph = graph or ServingGraph(model)
        self.input_size = self.graph.input_size
        self.num_classes = self.graph.num_classes
        self.explains = self.graph.explains
        self.fallback_reason = fallback_reason
        self.fused = fused
        self.report = {}

    @property
    def feature_size(self):
        return self.graph.feature_size if self.fused else 0

    def analyse(self, image):
        """(probabilities float64 (K,), cam (h, w) or None) for one prepared uint8/float image."""
        return self.analyse_all(image)[:2]

    def analyse_all(self, image):
        """(probabilities, cam or None, penultimate features (D,) or None): one pass when fused."""
        batch = np.asarray(image, dtype=np.float32)[None]
        if self.fused:
            probabilities, cam, features = self.graph.run(batch)
            return np.asarray(probabilities, dtype=np.float64), cam, features
        probabilities = self.predict(batch)[0]
        cam = self.graph.class_cam(batch, int(np.argmax(probabilities))) if self.explains else None
        return probabilities, cam, None

    def predict(self, batch):
        """Probabilities (N, K) float64 of a float32 batch (N, S, S, 3)."""
        return np.asarray(self.model.predict_on_batch(np.asarray(batch, dtype=np.float32)), dtype=np.float64)

    def describe(self):
        return {"runtime": self.runtime, "explains": self.explains, "fallback_reason": self.fallback_reason}


class TFLiteServing:
    """The converted serving graph in a TFLite interpreter (one image per call, float32)."""

    runtime = "tflite"

    def __init__(self, content, *, input_size, num_classes, explains, feature_size=0, num_threads=None):
        interpreter_class, self.interpreter_name = _interpreter_class()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self._interpreter = interpreter_class(model_content=bytes(content), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self.input_size = int(input_size)
        self.num_classes = int(num_classes)
        self.explains = bool(explains)
        self.fallback_reason = ""
        self.report = {}
        self._lock = threading.Lock()
        (detail,) = self._interpreter.get_input_details()
        expected = (1, self.input_size, self.input_size, 3)
        if tuple(detail["shape"]) != expected or detail["dtype"] != np.float32:
            raise ExportError(
                f"The TFLite model takes {tuple(detail['shape'])} {detail['dtype']}, not {expected} float32."
            )
        self._input = detail["index"]
        # Outputs told apart by shape: (1, K) probabilities, (1, h, w) map, (1, D) features (D != K).
        by_shape = {}
        for output in self._interpreter.get_output_details():
            shape = tuple(output["shape"])
            key = "cam" if len(shape) == 3 else "probabilities" if shape[-1] == self.num_classes else "features"
            by_shape[key] = output
        feature_size = int(feature_size)
        if (
            "probabilities" not in by_shape
            or (self.explains and "cam" not in by_shape)
            or (feature_size and by_shape.get("features", {}).get("shape", [0])[-1] != feature_size)
        ):
            raise ExportError("The TFLite model's outputs are not (probabilities, cam, features) as expected.")
        self.feature_size = feature_size
        self._probabilities = by_shape["probabilities"]["index"]
        self._cam = by_shape["cam"]["index"] if self.explains else None
        self._features = by_shape["features"]["index"] if feature_size else None

    def analyse(self, image):
        return self.analyse_all(image)[:2]

    def analyse_all(self, image):
        """(probabilities float64 (K,), cam or None, penultimate features (D,) or None): one call."""
        batch = np.ascontiguousarray(np.asarray(image, dtype=np.float32)[None])
        with self._lock:
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            probabilities = self._interpreter.get_tensor(self._probabilities)[0].astype(np.float64)
            cam = self._interpreter.get_tensor(self._cam)[0].copy() if self.explains else None
            features = self._interpreter.get_tensor(self._features)[0].copy() if self.feature_size else None
        return probabilities, cam, features

    def predict(self, batch):
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        return np.stack([self.analyse(image)[0] for image in batch]) if len(batch) else np.zeros((0, self.num_classes))

    def describe(self):
        return {
            "runtime": self.runtime,
            "interpreter": self.interpreter_name,
            "explains": self.explains,
            "features": self.feature_size,
            **{k: self.report.get(k) for k in ("max_abs_diff", "max_cam_diff", "max_feature_diff", "probes")},
        }


# --------------------------------------------------------------------------------------------------
# Verification


def _keras_probabilities(model, images):
    # One image per call, the shape serving uses (and no retracing for another batch size).
    images = np.asarray(images, dtype=np.float32)
    return np.concatenate([np.asarray(model.predict_on_batch(image[None]), dtype=np.float64) for image in images])


def _keras_features(model, images):
    """The head's input (N, D) per image, one image per call (as serving runs)."""
    import keras

    extractor = keras.Model(model.inputs, model.layers[-1].input)
    images = np.asarray(images, dtype=np.float32)
    return np.concatenate([np.asarray(extractor.predict_on_batch(image[None]), dtype=np.float64) for image in images])


def _cam_diff(got, expected):
    """Largest difference between two maps, relative to the expected map's peak."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        return float("inf")
    peak = float(np.max(np.abs(expected))) if expected.size else 0.0
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    if not np.isfinite(diff):
        return float("inf")
    return diff / peak if peak > 1e-6 else diff  # an all-zero map: compare absolutely


def verify(candidate, model, graph, probes, tolerance=DEFAULT_TOLERANCE):
    """Check ``candidate`` (a serving runtime) against the Keras model on ``probes``; returns a report.

    The probabilities must match ``model.predict_on_batch`` within ``tolerance`` (max abs diff);
    with a ``graph``, the maps must match the TensorFlow serving graph's within CAM_TOLERANCE of
    their peak (without one, they must only be finite maps). Raises ExportError otherwise.
    """
    probes = np.asarray(probes)
    expected = _keras_probabilities(model, probes)
    expected_features = _keras_features(model, probes) if candidate.feature_size else None
    worst, worst_cam, worst_features = 0.0, 0.0, 0.0
    for index, image in enumerate(probes):
        probabilities, cam, features = candidate.analyse_all(image)
        if expected_features is not None:
            worst_features = max(worst_features, _cam_diff(features, expected_features[index]))
        if not np.all(np.isfinite(probabilities)):
            raise ExportError(f"The exported model returns non-finite probabilities on probe {index}.")
        worst = max(worst, float(np.max(np.abs(probabilities - expected[index]))))
        if candidate.explains:
            if cam is None or not np.all(np.isfinite(cam)):
                raise ExportError(f"The exported model returns no usable Grad-CAM map on probe {index}.")
            if graph is not None and getattr(candidate, "graph", None) is not graph:
                _, reference_cam = graph(np.asarray(image, dtype=np.float32)[None])
                worst_cam = max(worst_cam, _cam_diff(cam, reference_cam))
    report = {
        "max_abs_diff": worst,
        "max_cam_diff": worst_cam,
        "max_feature_diff": worst_features,
        "tolerance": tolerance,
        "cam_tolerance": CAM_TOLERANCE,
        "probes": int(len(probes)),
    }
    if worst >= tolerance:
        raise ExportError(
            f"The exported model's probabilities differ from Keras by up to {worst:.3g} "
            f"(tolerance {tolerance:g}) on {len(probes)} probe images; refusing it."
        )
    if worst_cam >= CAM_TOLERANCE:
        raise ExportError(
            f"The exported model's Grad-CAM maps differ from TensorFlow's by up to {worst_cam:.3g} of their "
            f"peak (tolerance {CAM_TOLERANCE:g}); refusing it."
        )
    if worst_features >= FEATURE_TOLERANCE:
        raise ExportError(
            f"The exported model's penultimate features differ from Keras by up to {worst_features:.3g} of "
            f"their peak (tolerance {FEATURE_TOLERANCE:g}); refusing it."
        )
    return report


def _probe_set(input_size, probes=None, extra=None):
    images = [smear_like_images(input_size)] if probes is None else [np.asarray(probes)]
    if extra is not None and len(extra):
        images.append(np.asarray(extra))
    batch = np.concatenate([np.asarray(i, dtype=np.float32).reshape(-1, input_size, input_size, 3) for i in images])
    return batch


# --------------------------------------------------------------------------------------------------
# Export and cache


def cache_paths(model_path, sha256, cache_dir=None):
    """(tflite path, info json path) of the export of the model file with ``sha256``."""
    folder = Path(cache_dir) if cache_dir else Path(model_path).resolve().parent / CACHE_FOLDER
    stem = str(sha256).lower()
    return folder / f"{stem}.tflite", folder / f"{stem}.json"


def _versions():
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "format": EXPORT_FORMAT}


def _write_atomically(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; other worker users must read it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_info(path, info):
    _write_atomically(path, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())


def _read_info(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path`` (a lock file) where the platform has flock; else no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not Linux
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def export_tflite(
    model,
    destination,
    *,
    source_sha256="",
    probes=None,
    tolerance=DEFAULT_TOLERANCE,
    with_cam=True,
    num_threads=None,
    graph=None,
):
    """Convert ``model``'s serving graph to TFLite, verify it, and write it to ``destination``.

    Writes ``destination`` (.tflite) and its info JSON (same stem, .json) atomically, only after
    the verification passed. Returns (TFLiteServing, info). Raises ExportError when the conversion
    fails or the converted graph does not reproduce the model (nothing is written then).
    """
    destination = Path(destination)
    graph = graph or ServingGraph(model, with_cam=with_cam)
    content = graph.convert_to_tflite()
    serving = TFLiteServing(
        content,
        input_size=graph.input_size,
        num_classes=graph.num_classes,
        explains=graph.explains,
        feature_size=graph.feature_size,
        num_threads=num_threads,
    )
    probe_batch = _probe_set(graph.input_size, probes)
    report = verify(serving, model, graph, probe_batch, tolerance)
    serving.report = report
    info = {
        **_versions(),
        "source_sha256": str(source_sha256).lower(),
        "tflite_sha256": hashlib.sha256(content).hexdigest(),
        "input_size": graph.input_size,
        "num_classes": graph.num_classes,
        "explains": graph.explains,
        "feature_size": graph.feature_size,
        "with_cam": bool(with_cam),
        "gradcam_layer": graph.layer_name,
        "verified": report,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    _write_atomically(destination, content)
    _write_info(destination.with_suffix(".json"), info)
    return serving, info


def _cached_serving(tflite_path, info, model, probes, tolerance, num_threads):
    """The cached export if it is the one recorded and still reproduces the model, else None.

    Loading checks the file's sha256 against its record and its probabilities against the Keras
    model again (the maps were compared with TensorFlow's at export time; here they must be finite
    maps of the recorded shape). No TensorFlow graph is built or traced for this: a worker child
    starts about as fast as with Keras alone.
    """
    try:
        content = tflite_path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(content).hexdigest() != info.get("tflite_sha256"):
        logger.warning("Serving cache %s does not match its record; exporting again.", tflite_path)
        return None
    try:
        serving = TFLiteServing(
            content,
            input_size=info["input_size"],
            num_classes=info["num_classes"],
            explains=info["explains"],
            feature_size=info.get("feature_size", 0),
            num_threads=num_threads,
        )
        serving.report = verify(serving, model, None, probes, tolerance)
    except ExportError as exc:
        logger.warning("Serving cache %s no longer reproduces the model (%s); exporting again.", tflite_path, exc)
        return None
    except Exception as exc:  # noqa: BLE001 - an unreadable flatbuffer or record: export again
        logger.warning(
            "Serving cache %s cannot be loaded (%s: %s); exporting again.", tflite_path, type(exc).__name__, exc
        )
        return None
    return serving


def load_serving(
    model,
    model_path,
    sha256,
    *,
    runtime="auto",
    cache_dir=None,
    probes=None,
    extra_probes=None,
    tolerance=DEFAULT_TOLERANCE,
    num_threads=None,
    with_cam=True,
):
    """The fastest verified runtime for ``model`` (loaded from ``model_path``, whose sha256 is given).

    ``runtime``: "auto" (TFLite when it verifies, else Keras), "tflite" (raise ExportError instead
    of falling back) or "keras". ``extra_probes``: real prepared images to verify on too (e.g. the
    image being analysed). The TFLite file is cached (see the module docstring); a model whose
    export was refused with this TensorFlow version is not converted again.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    input_size = int(model.inputs[0].shape[1])
    probe_batch = _probe_set(input_size, probes, extra_probes)
    graph = None  # built only when needed: to export, or to serve with Keras

    def fallback(reason):
        return keras_serving(model, graph or ServingGraph(model, with_cam=with_cam), probe_batch, tolerance, reason)

    if runtime == "keras":
        return fallback("Keras runtime requested.")
    tflite_path, info_path = cache_paths(model_path, sha256, cache_dir)
    versions = _versions()
    try:
        with _locked(tflite_path.with_suffix(".lock")):
            info = _read_info(info_path)
            same_build = (
                bool(info)
                and all(info.get(k) == v for k, v in versions.items())
                and (info.get("source_sha256") == str(sha256).lower())
            )
            if same_build and info.get("refused"):
                raise ExportError(f"Export refused earlier: {info['refused']}")
            if same_build and (info.get("with_cam", True) or not with_cam):  # a map-less export won't do for maps
                serving = _cached_serving(tflite_path, info, model, probe_batch, tolerance, num_threads)
                if serving is not None:
                    return serving
            graph = ServingGraph(model, with_cam=with_cam)
            try:
                serving, info = export_tflite(
                    model,
                    tflite_path,
                    source_sha256=sha256,
                    probes=probe_batch,
                    tolerance=tolerance,
                    num_threads=num_threads,
                    graph=graph,
                    with_cam=with_cam,
                )
            except ExportError as exc:
                with contextlib.suppress(OSError):
                    _write_info(info_path, {**versions, "source_sha256": str(sha256).lower(), "refused": str(exc)})
                raise
            return serving
    except ExportError as exc:
        if runtime == "tflite":
            raise
        logger.warning("Serving %s with Keras: %s", Path(model_path).name, exc)
        return fallback(str(exc))
    except OSError as exc:  # the cache folder is not writable: still serve, with Keras
        if runtime == "tflite":
            raise ExportError(f"Cannot write the serving cache beside {model_path}: {exc}") from exc
        logger.warning("Serving %s with Keras: cannot use the serving cache (%s)", Path(model_path).name, exc)
        return fallback(f"serving cache unavailable: {exc}")


def keras_serving(model, graph, probes, tolerance=DEFAULT_TOLERANCE, reason=""):
    """KerasServing, fused (one pass per image) when the graph reproduces ``predict_on_batch``."""
    serving = KerasServing(model, graph, fallback_reason=reason, fused=True)
    try:
        serving.report = verify(serving, model, graph, probes, tolerance)
    except ExportError as exc:
        logger.warning("Serving graph differs from the Keras model (%s); using two passes per image.", exc)
        serving.fused = False
    return serving


__all__ = [
    "DEFAULT_TOLERANCE",
    "ExportError",
    "GradCamUnavailable",
    "KerasServing",
    "ServingGraph",
    "TFLiteServing",
    "cache_paths",
    "export_tflite",
    "find_feature_layer",
    "grad_model",
    "keras_serving",
    "load_serving",
    "smear_like_images",
    "verify",
]

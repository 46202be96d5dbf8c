"""ml.export: the same model served by TFLite, verified against Keras, cached by sha256."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":  # serving export is TensorFlow-only
    pytest.skip("serving export needs the TensorFlow backend", allow_module_level=True)

from ml import artifacts, export  # noqa: E402
from ml.architectures import build_model  # noqa: E402
from ml.classes import CLASS_NAMES  # noqa: E402

SIZE = 32


def _model(architecture="convnet_bn", size=SIZE, seed=3, bias=(0.0, 0.4, 2.5, -0.5)):
    model = build_model(architecture, image_size=size, num_classes=len(CLASS_NAMES), augment=True, seed=seed)
    head = model.get_layer("predictions")
    kernel, _ = head.get_weights()
    head.set_weights([kernel, np.asarray(bias, dtype="float32")])
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model loaded back from its .keras file, path, sha256), as the worker has it."""
    folder = tmp_path_factory.mktemp("export-model")
    path = folder / "model.keras"
    sha256 = artifacts.save_model_atomically(_model(), path)
    return artifacts.load_model_verified(path, sha256), path, sha256


def test_probe_images_look_like_smears_and_are_deterministic():
    images = export.smear_like_images(48, count=4, seed=1)
    assert images.shape == (4, 48, 48, 3) and images.dtype == np.uint8
    assert np.array_equal(images, export.smear_like_images(48, count=4, seed=1))
    assert not np.array_equal(images[0], images[1])
    assert (images[-1][:4] == 0).all()  # the last one is letterboxed like a padded upload
    assert images[0].mean() > 120 and images[0].std() > 10  # pale background with darker cells


def test_tflite_export_reproduces_keras_and_is_cached_beside_the_model(saved):
    model, path, sha256 = saved
    serving = export.load_serving(model, path, sha256, num_threads=1)
    assert serving.runtime == "tflite" and serving.explains
    assert serving.report["max_abs_diff"] < 1e-4

    tflite_path, info_path = export.cache_paths(path, sha256)
    assert tflite_path.parent == path.parent / ".serving" and tflite_path.name == f"{sha256}.tflite"
    info = json.loads(info_path.read_text())
    assert info["source_sha256"] == sha256 and info["explains"] is True
    assert info["verified"]["max_abs_diff"] < 1e-4

    images = export.smear_like_images(SIZE, count=6, seed=9)
    expected = model.predict_on_batch(images.astype("float32"))
    graph = export.ServingGraph(model)
    for image, row in zip(images, expected):
        probabilities, cam = serving.analyse(image)
        assert np.max(np.abs(probabilities - row)) < 1e-4
        assert probabilities.dtype == np.float64 and abs(probabilities.sum() - 1) < 1e-4
        # The map is Grad-CAM of the top class, the same as explaining that class separately.
        top = int(np.argmax(row))
        reference = graph.class_cam(image[None].astype("float32"), top)
        assert cam.shape == reference.shape and cam.ndim == 2
        assert np.max(np.abs(cam - reference)) <= 1e-3 * max(float(reference.max()), 1e-6) + 1e-7
    assert np.allclose(serving.predict(images.astype("float32")), expected, atol=1e-4)


def test_the_same_pass_gives_the_penultimate_features_for_the_ood_score(saved, tmp_path):
    import keras

    from ml import ood

    model, path, sha256 = saved
    extractor = ood.feature_model(model)
    images = export.smear_like_images(SIZE, count=4, seed=5)
    expected, _ = extractor.predict_on_batch(images.astype("float32"))
    for runtime in ("tflite", "keras"):
        serving = export.load_serving(model, path, sha256, runtime=runtime, cache_dir=tmp_path / runtime)
        assert serving.feature_size == expected.shape[1] == model.layers[-1].input.shape[-1]
        for image, row in zip(images, expected):
            probabilities, _, features = serving.analyse_all(image)
            assert features.shape == row.shape
            assert np.max(np.abs(features - row)) <= 1e-3 * max(float(np.abs(row).max()), 1e-6)
    # a model whose head is no softmax Dense gives no features: the worker computes them apart
    inputs = keras.Input((SIZE, SIZE, 3))
    flat = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    plain = keras.Model(inputs, keras.layers.Softmax()(flat))
    assert export.ServingGraph(plain).feature_size == 0


def test_cached_export_is_reused_without_converting_again(saved, monkeypatch):
    model, path, sha256 = saved
    export.load_serving(model, path, sha256)  # ensure the cache exists

    def no_graph(*args, **kwargs):
        raise AssertionError("a TensorFlow graph was built although a verified export is cached")

    # A worker child loading a cached export builds and traces no TensorFlow graph: it starts fast.
    monkeypatch.setattr(export, "ServingGraph", no_graph)
    serving = export.load_serving(model, path, sha256)
    assert serving.runtime == "tflite" and serving.explains
    assert serving.report["max_abs_diff"] < 1e-4  # the probabilities were checked again on load


def test_altered_cache_file_is_never_served(saved, tmp_path):
    model, path, sha256 = saved
    cache = tmp_path / "cache"
    export.load_serving(model, path, sha256, cache_dir=cache)
    tflite_path, info_path = export.cache_paths(path, sha256, cache)
    original = tflite_path.read_bytes()
    tflite_path.write_bytes(original[:-64] + b"\0" * 64)  # altered after it was verified
    serving = export.load_serving(model, path, sha256, cache_dir=cache)
    assert serving.runtime == "tflite"
    assert tflite_path.read_bytes() != original[:-64] + b"\0" * 64  # exported again
    assert (
        json.loads(info_path.read_text())["tflite_sha256"]
        == __import__("hashlib").sha256(tflite_path.read_bytes()).hexdigest()
    )


def test_cache_of_another_model_is_not_used(tmp_path):
    """The cache is keyed by the model's bytes: a different model never picks up another's export."""
    first = _model(seed=1)
    second = _model(seed=2, bias=(2.0, 0.0, 0.0, 0.0))
    path_a, path_b = tmp_path / "a" / "model.keras", tmp_path / "b" / "model.keras"
    sha_a = artifacts.save_model_atomically(first, path_a)
    sha_b = artifacts.save_model_atomically(second, path_b)
    cache = tmp_path / "shared-cache"
    a = export.load_serving(first, path_a, sha_a, cache_dir=cache)
    b = export.load_serving(second, path_b, sha_b, cache_dir=cache)
    image = export.smear_like_images(SIZE, count=1)[0]
    assert np.max(np.abs(b.analyse(image)[0] - second.predict_on_batch(image[None].astype("float32"))[0])) < 1e-4
    assert np.max(np.abs(a.analyse(image)[0] - b.analyse(image)[0])) > 1e-3
    assert len(list(cache.glob("*.tflite"))) == 2


def test_export_that_does_not_match_is_refused_and_keras_serves(saved, tmp_path, monkeypatch):
    model, path, sha256 = saved
    cache = tmp_path / "cache"
    real_analyse = export.TFLiteServing.analyse_all

    def drifting(self, image):  # a runtime whose numbers are off by 1e-3
        probabilities, cam, features = real_analyse(self, image)
        return probabilities + 1e-3, cam, features

    monkeypatch.setattr(export.TFLiteServing, "analyse_all", drifting)
    with pytest.raises(export.ExportError, match="differ from Keras"):
        export.load_serving(model, path, sha256, cache_dir=cache, runtime="tflite")
    tflite_path, info_path = export.cache_paths(path, sha256, cache)
    assert not tflite_path.exists()  # nothing unverified is written
    assert "refused" in json.loads(info_path.read_text())

    serving = export.load_serving(model, path, sha256, cache_dir=cache)  # auto: falls back
    assert serving.runtime == "keras" and "differ from Keras" in serving.fallback_reason
    image = export.smear_like_images(SIZE, count=1)[0]
    probabilities, cam = serving.analyse(image)
    assert np.max(np.abs(probabilities - model.predict_on_batch(image[None].astype("float32"))[0])) < 1e-5
    assert cam is not None

    # The refusal is remembered: no conversion again for this model and TensorFlow version.
    monkeypatch.setattr(export.ServingGraph, "convert_to_tflite", lambda self: pytest.fail("converted again"))
    assert export.load_serving(model, path, sha256, cache_dir=cache).runtime == "keras"


def test_unwritable_cache_falls_back_to_keras(saved, tmp_path):
    model, path, sha256 = saved
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    serving = export.load_serving(model, path, sha256, cache_dir=blocker / "cache")
    assert serving.runtime == "keras" and "cache" in serving.fallback_reason
    with pytest.raises(export.ExportError):
        export.load_serving(model, path, sha256, cache_dir=blocker / "cache", runtime="tflite")


def test_keras_runtime_on_request_gives_the_same_result(saved):
    model, path, sha256 = saved
    keras_serving = export.load_serving(model, path, sha256, runtime="keras")
    tflite_serving = export.load_serving(model, path, sha256)
    assert keras_serving.runtime == "keras" and keras_serving.fused
    for image in export.smear_like_images(SIZE, count=3, seed=4):
        p_keras, cam_keras = keras_serving.analyse(image)
        p_tflite, cam_tflite = tflite_serving.analyse(image)
        assert np.max(np.abs(p_keras - p_tflite)) < 1e-4
        assert np.max(np.abs(cam_keras - cam_tflite)) <= 1e-3 * max(float(cam_keras.max()), 1e-6) + 1e-7


def test_model_without_a_spatial_feature_map_exports_probabilities_only(tmp_path):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "flat.keras"
    sha256 = artifacts.save_model_atomically(model, path)
    serving = export.load_serving(model, path, sha256)
    assert serving.runtime == "tflite" and not serving.explains
    image = export.smear_like_images(8, count=1)[0]
    probabilities, cam = serving.analyse(image)
    assert cam is None
    assert np.max(np.abs(probabilities - model.predict_on_batch(image[None].astype("float32"))[0])) < 1e-4


@pytest.mark.slow
def test_nested_backbone_exports_with_grad_cam(tmp_path):
    """MobileNetV2 is one nested layer: its export still gives Grad-CAM and the model's probabilities."""
    model = _model("mobilenetv2", size=64, seed=5)  # 64 px: a 2x2 feature map to explain
    path = tmp_path / "mobilenet.keras"
    sha256 = artifacts.save_model_atomically(model, path)
    loaded = artifacts.load_model_verified(path, sha256)
    serving = export.load_serving(loaded, path, sha256)
    assert serving.runtime == "tflite" and serving.explains
    assert serving.report["max_abs_diff"] < 1e-4

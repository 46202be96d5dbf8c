import hashlib
import json

import keras
import numpy as np
import pytest

from ml.architectures import build_model
from ml.artifacts import (
    ModelIntegrityError,
    load_model_verified,
    save_model_atomically,
    sha256_file,
    write_metadata,
)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("artifacts")
    model = build_model("convnet", image_size=16, seed=0)  # includes the custom shear layer
    path = folder / "model.keras"
    digest = save_model_atomically(model, path)
    return model, path, digest


def test_save_is_atomic_and_returns_sha256(saved_model):
    _, path, digest = saved_model
    assert digest == sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.keras"]  # no temp files left


def test_save_overwrites_and_refuses_other_suffix(saved_model, tmp_path):
    model, _, _ = saved_model
    target = tmp_path / "m.keras"
    target.write_bytes(b"old")
    save_model_atomically(model, target)
    assert target.read_bytes() != b"old"
    with pytest.raises(ValueError):
        save_model_atomically(model, tmp_path / "m.h5")


def test_verified_load_gives_same_predictions(saved_model):
    model, path, digest = saved_model
    loaded = load_model_verified(path, digest)
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-7)


def test_tampered_model_is_refused(saved_model, tmp_path):
    _, path, digest = saved_model
    tampered = tmp_path / "model.keras"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="refusing"):
        load_model_verified(tampered, digest)
    with pytest.raises(ModelIntegrityError):
        load_model_verified(path, "0" * 64)
    with pytest.raises(ModelIntegrityError):
        load_model_verified(path, "")


def test_lambda_layers_are_refused_by_safe_mode(tmp_path):
    # Why the package never uses Lambda: a safe_mode load refuses the pickled Python code.
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    path = tmp_path / "lambda.keras"
    digest = save_model_atomically(model, path)
    with pytest.raises(ValueError, match="safe_mode"):
        load_model_verified(path, digest)


def test_write_metadata_is_atomic_json(tmp_path):
    path = tmp_path / "metadata.json"
    write_metadata(path, {"a": np.float32(0.5), "b": np.arange(3), "c": tmp_path})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": str(tmp_path)}
    with pytest.raises(TypeError):
        write_metadata(path, {"bad": object()})
    assert json.loads(path.read_text())["a"] == 0.5  # the failed write left the old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.json"]


def test_trained_model_is_saved_without_optimizer_state(tmp_path):
    model = build_model("convnet_bn", image_size=16, seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    model.fit(x, rng.integers(0, 4, 8), epochs=1, verbose=0)
    with_optimizer = tmp_path / "with-optimizer.keras"
    model.save(with_optimizer)
    slim = tmp_path / "model.keras"
    digest = save_model_atomically(model, slim)
    assert slim.stat().st_size < with_optimizer.stat().st_size * 0.6
    loaded = load_model_verified(slim, digest)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)

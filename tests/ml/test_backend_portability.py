"""The model code must also run on the GPU machine's backends (PyTorch, JAX), not only TensorFlow.

Keras picks its backend once per process, so each check runs in a subprocess with KERAS_BACKEND
set: build every architecture small, take a training step, save, load with safe_mode=True and
compare; then a short resumable train_model run, and a TensorFlow-side load of a model saved by
the other backend (the serving situation: trained on the GPU machine, served here).
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

TRAIN_AND_SAVE = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    from ml.architectures import ARCHITECTURE_NAMES, build_model
    from ml.train import TrainConfig, train_model

    out = sys.argv[1]
    report = {"backend": keras.backend.backend()}
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    y = np.arange(4) % 4
    probe = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    np.save(f"{out}/probe.npy", probe)
    for architecture in ARCHITECTURE_NAMES:
        model = build_model(architecture, image_size=32, seed=1)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        loss = float(np.asarray(model.train_on_batch(x, y)[0]))
        path = f"{out}/{architecture}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        same_weights = all(np.array_equal(np.asarray(a), np.asarray(b))
                           for a, b in zip(model.weights, loaded.weights))
        before = np.asarray(keras.ops.convert_to_numpy(model(probe, training=False)))
        after = np.asarray(keras.ops.convert_to_numpy(loaded(probe, training=False)))
        np.save(f"{out}/{architecture}.npy", before)
        report[architecture] = {"loss": loss, "same_weights": same_weights,
                                "max_diff": float(np.abs(before - after).max())}

    # A short resumable run (BackupAndRestore, checkpoints, schedules) on this backend.
    xs = rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    ys = np.arange(16) % 4
    config = TrainConfig(architecture="convnet", image_size=16, epochs=2, batch_size=8, patience=0)
    result = train_model(config, (xs, ys), (xs, ys), f"{out}/run", progress=False)
    report["train_model_epochs"] = result.epochs_run
    report["jit_compile"] = bool(result.model.jit_compile)
    print("REPORT " + json.dumps(report))
""")

LOAD_UNDER_TENSORFLOW = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    from ml.architectures import ARCHITECTURE_NAMES
    from ml import layers  # registers the telediag layers

    out = sys.argv[1]
    probe = np.load(f"{out}/probe.npy")
    diffs = {}
    for architecture in ARCHITECTURE_NAMES:
        loaded = keras.saving.load_model(f"{out}/{architecture}.keras", safe_mode=True)
        diffs[architecture] = float(np.abs(np.asarray(loaded(probe, training=False))
                                           - np.load(f"{out}/{architecture}.npy")).max())
    print("REPORT " + json.dumps(diffs))
""")


def _run(script, backend, out, timeout=420):
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = next(row for row in completed.stdout.splitlines() if row.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


def _check_backend(backend, tmp_path):
    report = _run(TRAIN_AND_SAVE, backend, tmp_path)
    assert report["backend"] == backend
    for architecture in ("convnet", "convnet_bn", "mobilenetv2", "resnet50", "vgg19"):
        entry = report[architecture]
        assert entry["same_weights"], architecture
        assert entry["max_diff"] <= 1e-5, (architecture, entry)
        assert entry["loss"] == entry["loss"], f"{architecture}: loss is NaN"
    assert report["train_model_epochs"] == 2
    # Served under TensorFlow, the files give the same predictions as on the training backend.
    diffs = _run(LOAD_UNDER_TENSORFLOW, "tensorflow", tmp_path)
    assert max(diffs.values()) <= 1e-4, diffs
    return report


@pytest.mark.slow
def test_torch_backend(tmp_path):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    _check_backend("torch", tmp_path)


@pytest.mark.slow
def test_jax_backend(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed here (the GPU machine has it)")
    report = _check_backend("jax", tmp_path)
    # The augmentation layers are marked jittable under JAX, so the train step is compiled.
    assert report["jit_compile"] is True

import json
import time

import keras
import numpy as np
import pytest

from ml.train import (
    TrainConfig,
    class_weights,
    cosine_learning_rate,
    train_model,
)

SIZE = 16


def _arrays(n=32, seed=0):
    """Colour-coded tiny images: class k has channel k bright (class 3: all channels)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = rng.integers(0, 60, (n, SIZE, SIZE, 3)).astype(np.uint8)
    for i, label in enumerate(y):
        if label < 3:
            x[i, ..., label] += 150
        else:
            x[i] += 150
    return x, y


def _config(**overrides):
    values = {
        "architecture": "convnet",
        "image_size": SIZE,
        "epochs": 5,
        "batch_size": 8,
        "seed": 3,
        "patience": 0,
        "augment": False,
    }
    values.update(overrides)
    return TrainConfig(**values)


class _EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.started = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started.append(epoch)


class _Crash(keras.callbacks.Callback):
    """Simulates the process dying right after ``after_epochs`` epochs have finished."""

    def __init__(self, after_epochs):
        super().__init__()
        self.after_epochs = after_epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after_epochs:
            raise KeyboardInterrupt("simulated interruption")


def test_train_writes_history_checkpoint_and_returns_best(tmp_path):
    result = train_model(_config(epochs=3), _arrays(), _arrays(16, seed=1), tmp_path, progress=False)
    assert result.epochs_run == 3 and len(result.history["loss"]) == 3
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"}
    assert result.best_epoch == int(np.argmax(result.history["val_accuracy"]))
    assert result.elapsed_seconds > 0 and result.training_seconds > 0
    assert (tmp_path / "checkpoints" / "best.weights.h5").exists()
    assert not (tmp_path / "backup").exists()  # removed once fit() completes
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["completed"] and [e["epoch"] for e in saved["epochs"]] == [0, 1, 2]
    assert json.loads((tmp_path / "train_config.json").read_text())["architecture"] == "convnet"
    # The returned model carries the checkpointed (best) weights.
    best = keras.models.clone_model(result.model)
    best.load_weights(tmp_path / "checkpoints" / "best.weights.h5")
    for a, b in zip(best.weights, result.model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_interrupted_training_resumes_at_the_last_finished_epoch(tmp_path):
    config = _config(epochs=5)
    train, val = _arrays(), _arrays(16, seed=1)
    with pytest.raises(KeyboardInterrupt):
        train_model(config, train, val, tmp_path, progress=False, callbacks=[_Crash(after_epochs=2)])
    assert (tmp_path / "backup").exists()
    assert [e["epoch"] for e in json.loads((tmp_path / "history.json").read_text())["epochs"]] == [0, 1]

    recorder = _EpochRecorder()
    result = train_model(config, train, val, tmp_path, progress=False, callbacks=[recorder])
    assert recorder.started == [2, 3, 4]  # not [0, 1, 2, 3, 4]
    assert result.resumed_from_epoch == 2
    assert result.epochs_run == 5 and len(result.history["val_accuracy"]) == 5
    # The cosine schedule is a function of the epoch, so it continues exactly where it stopped.
    expected = [cosine_learning_rate(e, 5, config.learning_rate, config.min_learning_rate) for e in range(5)]
    np.testing.assert_allclose(result.history["learning_rate"], expected, rtol=1e-5)


def test_resume_refuses_a_different_architecture(tmp_path):
    train, val = _arrays(), _arrays(16, seed=1)
    with pytest.raises(KeyboardInterrupt):
        train_model(_config(epochs=3), train, val, tmp_path, progress=False, callbacks=[_Crash(1)])
    with pytest.raises(ValueError, match="architecture"):
        train_model(_config(epochs=3, architecture="convnet_bn"), train, val, tmp_path, progress=False)


def test_resume_of_a_run_saved_before_a_setting_existed_takes_its_default(tmp_path):
    train, val = _arrays(), _arrays(16, seed=1)
    with pytest.raises(KeyboardInterrupt):
        train_model(_config(epochs=3), train, val, tmp_path, progress=False, callbacks=[_Crash(1)])
    saved = json.loads((tmp_path / "train_config.json").read_text())
    for key in ("augment_grayscale", "augment_stain", "augment_site"):  # as older code wrote it
        del saved[key]
    (tmp_path / "train_config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="augment_stain=0.0, not 0.1"):
        train_model(_config(epochs=3, augment_stain=0.1), train, val, tmp_path, progress=False)
    with pytest.raises(ValueError, match="augment_site"):
        train_model(_config(epochs=3, augment_site=("jpeg",)), train, val, tmp_path, progress=False)
    result = train_model(_config(epochs=3), train, val, tmp_path, progress=False)
    assert result.resumed_from_epoch == 1 and result.epochs_run == 3


def test_early_stopping_and_plateau_schedule(tmp_path):
    x, y = _arrays()
    shuffled = np.random.default_rng(0).permutation(y)  # unlearnable labels: val accuracy stalls
    result = train_model(
        _config(epochs=30, patience=2, lr_schedule="plateau"),
        (x, shuffled),
        (x[:16], shuffled[:16]),
        tmp_path,
        progress=False,
    )
    assert result.stopped_early and result.epochs_run < 30
    assert result.best_epoch == int(np.argmax(result.history["val_accuracy"]))


class _SlowEpochs(keras.callbacks.Callback):
    """Makes every epoch last at least ``seconds``, so a time limit is hit at a known epoch."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_epoch_begin(self, epoch, logs=None):  # runs after the time limit's own epoch start
        time.sleep(self.seconds)


def test_time_limit_stops_before_an_epoch_that_would_overrun(tmp_path):
    # Epochs of >= 1 s under a 2.5 s limit: after epoch 2 (>= 2 s used) a third would end past it.
    result = train_model(
        _config(epochs=20, time_limit_seconds=2.5),
        _arrays(),
        _arrays(16, seed=1),
        tmp_path,
        progress=False,
        callbacks=[_SlowEpochs(1.0)],
    )
    assert result.stopped_by_time_limit and not result.stopped_early
    assert 1 <= result.epochs_run <= 2
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["stopped_by_time_limit"] and len(saved["epochs"]) == result.epochs_run


def test_a_time_limit_that_is_not_reached_changes_nothing(tmp_path):
    result = train_model(
        _config(epochs=2, time_limit_seconds=3600), _arrays(), _arrays(16, seed=1), tmp_path, progress=False
    )
    assert result.epochs_run == 2 and not result.stopped_by_time_limit


def test_class_weights_balance_classes():
    weights = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    assert weights == {0: pytest.approx(6 / 9), 1: pytest.approx(2.0), 2: pytest.approx(1.0)}


def test_cosine_schedule_end_points():
    assert cosine_learning_rate(0, 10, 1e-3, 1e-6) == pytest.approx(1e-3)
    assert cosine_learning_rate(9, 10, 1e-3, 1e-6) == pytest.approx(1e-6)
    assert cosine_learning_rate(0, 1, 1e-3, 1e-6) == pytest.approx(1e-3)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="lr_schedule"):
        _config(lr_schedule="step")
    x, y = _arrays()
    with pytest.raises(ValueError, match="images must be"):
        train_model(_config(image_size=32), (x, y), (x, y), tmp_path, progress=False)
    with pytest.raises(ValueError, match="output_dir"):
        train_model(_config(), (x, y), (x, y), None, progress=False)


def test_learning_rate_defaults_per_architecture_and_an_explicit_one_wins():
    assert TrainConfig(architecture="vgg19").learning_rate == pytest.approx(1e-4)  # no normalisation layers
    assert TrainConfig(architecture="mobilenetv2").learning_rate == pytest.approx(1e-3)
    assert TrainConfig(architecture="vgg19", learning_rate=3e-4).learning_rate == pytest.approx(3e-4)

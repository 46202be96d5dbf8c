"""run_training fits the "not a stained smear" check on the training split at 224 px, measures its
false-flag rate on the validation split and records both in metadata.json (and smear_check.json)."""

import json

import numpy as np
import pytest

from ml import pipeline
from ml.dataset import fingerprint_samples, scan_dataset
from ml.pipeline import SMEAR_CHECK_FILE, SMEAR_CHECK_SIZE, fit_smear_check, run_training
from ml.smear_check import BLANK, SmearCheck
from ml.splits import make_split

from .synthetic import write_dataset


class Stop(Exception):
    """Raised by a spy to end run_training before it trains anything."""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("smear-run") / "data", per_class=12, size=40)


@pytest.fixture(scope="module")
def small_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("smear-run-out")
    result = run_training(
        data_root,
        "convnet",
        out,
        epochs=1,
        image_size=16,
        split_mode="random",
        seed=3,
        batch_size=8,
        augment=False,
        progress=False,
    )
    return out, result


def test_metadata_records_the_check_fitted_on_the_training_split(small_run, data_root):
    out, _ = small_run
    metadata = json.loads((out / "metadata.json").read_text())
    params = metadata["smear_check"]
    n_train, n_val = len(metadata["split"]["splits"]["train"]), len(metadata["split"]["splits"]["val"])
    assert n_train >= 20 and n_val > 0
    # Fitted at 224 px although the model is trained at 16 px: serving checks 224 px images.
    assert params["image_size"] == SMEAR_CHECK_SIZE == 224 and metadata["input_size"] == 16
    assert params["n_fit"] == n_train and params["fitted_on"]["split"] == "train"
    assert params["validation"]["n"] == n_val
    rate = metadata["smear_check_false_flag_rate"]
    assert rate == params["validation"]["rate"] and 0.0 <= rate <= 1.0
    assert params["validation"]["flagged"] == round(rate * n_val)
    assert len(params["validation"]["examples"]) == min(params["validation"]["flagged"], 20)
    # The same parameters are in the run folder, and they make a working check.
    assert json.loads((out / SMEAR_CHECK_FILE).read_text()) == params
    check = SmearCheck.from_dict(params)
    assert check.reasons(np.full((224, 224, 3), 200, np.uint8)) == [BLANK]


def test_an_interrupted_run_reuses_its_fitted_check(small_run, data_root, monkeypatch):
    out, result = small_run

    def refuse(self, x):
        raise AssertionError("the check was fitted again")

    monkeypatch.setattr(SmearCheck, "fit", refuse)
    again = run_training(
        data_root,
        "convnet",
        out,
        epochs=1,
        image_size=16,
        split_mode="random",
        seed=3,
        batch_size=8,
        augment=False,
        progress=False,
    )
    assert again["smear_check"] == result["smear_check"]
    assert again["smear_check_false_flag_rate"] == result["smear_check_false_flag_rate"]


def test_the_arrays_are_reused_at_224_and_loaded_at_224_otherwise(data_root, tmp_path, monkeypatch):
    loaded_sizes, seen = [], {}
    real_load = pipeline.load_arrays

    def load(samples, size, workers=None):
        loaded_sizes.append(size)
        return real_load(samples, size, workers=workers)

    def spy(split, output_dir, *, train_x=None, val_x=None, load_workers=None, log=None):
        seen.update(train_x=train_x, val_x=val_x, n_train=len(split.train))
        raise Stop

    monkeypatch.setattr(pipeline, "load_arrays", load)
    monkeypatch.setattr(pipeline, "fit_smear_check", spy)
    with pytest.raises(Stop):
        run_training(
            data_root, "convnet", tmp_path / "a", epochs=1, image_size=224, split_mode="random", seed=3, progress=False
        )
    assert loaded_sizes == [224, 224, 224]  # train, val, test: nothing loaded twice
    assert seen["train_x"].shape == (seen["n_train"], 224, 224, 3) and seen["val_x"].dtype == np.uint8

    loaded_sizes.clear()
    with pytest.raises(Stop):
        run_training(
            data_root, "convnet", tmp_path / "b", epochs=1, image_size=32, split_mode="random", seed=3, progress=False
        )
    assert loaded_sizes == [32, 32, 32] and seen["train_x"] is None and seen["val_x"] is None


def test_fit_loads_at_224_refits_for_other_images_and_skips_tiny_splits(data_root, tmp_path):
    samples = scan_dataset(data_root).samples
    split = make_split(samples, "random", seed=5)
    lines = []
    params, rate = fit_smear_check(split, tmp_path, log=lines.append)
    assert params["image_size"] == 224 and params["n_fit"] == len(split.train)
    assert params["fitted_on"]["train_fingerprint"] == fingerprint_samples(split.train)
    assert rate == params["validation"]["rate"] and "validation images" in lines[-1]

    # Another split in the same folder: the saved check does not describe it, so it is fitted again.
    other = make_split(samples, "random", seed=6)
    params2, _ = fit_smear_check(other, tmp_path, log=lines.append)
    assert params2["fitted_on"]["train_fingerprint"] == fingerprint_samples(other.train)
    assert json.loads((tmp_path / SMEAR_CHECK_FILE).read_text()) == params2
    # A corrupt file is refitted, not trusted.
    (tmp_path / SMEAR_CHECK_FILE).write_text("{not json")
    params3, _ = fit_smear_check(other, tmp_path)
    assert params3["median"] == params2["median"]

    tiny = make_split(samples[:24], "random", seed=5)  # 24 images: fewer than 20 to train on
    assert len(tiny.train) < 20
    assert fit_smear_check(tiny, tmp_path / "tiny", log=lines.append) == (None, None)
    assert "not fitted" in lines[-1] and not (tmp_path / "tiny").exists()

"""Fixtures for the training tests: tiny synthetic smear folders, and models trained on them once.

Synthetic classes are trivially separable (each class is one solid colour plus noise), so a tiny
convnet trained for a few epochs at 32 px gets every image right.
"""

import shutil

import numpy as np
import pytest

SIZE = 32
EPOCHS = 3
BATCH = 4
# Folder name -> base RGB colour (folder names as in the real data set).
CLASS_COLOURS = {"Benign": (220, 40, 40), "Early": (40, 200, 40), "Pre": (40, 40, 220), "Pro": (230, 220, 30)}
TRAIN_SETTINGS = dict(epochs=EPOCHS, image_size=SIZE, split_mode="random", seed=7, batch_size=BATCH, augment=False)


def make_image(path, colour, rng, size=40):
    from PIL import Image

    noise = rng.integers(-25, 26, size=(size, size, 3))
    pixels = np.clip(np.asarray(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path)


def make_synthetic_set(root, per_class, seed, suffix=".png"):
    rng = np.random.default_rng(seed)
    for folder, colour in CLASS_COLOURS.items():
        for i in range(1, per_class + 1):
            make_image(root / folder / f"WBC-{folder}-{i:03d}{suffix}", colour, rng)
    return root


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """Training folder: 20 images per class."""
    return make_synthetic_set(tmp_path_factory.mktemp("synthetic") / "train", per_class=20, seed=1)


@pytest.fixture(scope="session")
def synthetic_eval_data(tmp_path_factory):
    """Another folder drawn the same way (other noise), 5 images per class, JPEG."""
    return make_synthetic_set(tmp_path_factory.mktemp("synthetic") / "eval", per_class=5, seed=2, suffix=".jpg")


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, synthetic_data):
    """An output folder where convnet and convnet_bn were trained with TRAIN_SETTINGS (no Django).

    `retrain --output <copy of it>` with the same settings reuses these instead of training again.
    """
    from ml.pipeline import run_training

    root = tmp_path_factory.mktemp("trained")
    results = {}
    split_record = None
    for arch in ("convnet", "convnet_bn"):
        results[arch] = run_training(
            synthetic_data, arch, root / arch, progress=False, split_record=split_record, **TRAIN_SETTINGS
        )
        split_record = results[arch]["split"]
    return root, results


@pytest.fixture
def trained_output(tmp_path, trained_runs):
    """A private copy of the trained output folder (tests may tamper with it)."""
    root, _ = trained_runs
    copy = tmp_path / "trained-copy"
    shutil.copytree(root, copy)
    return copy


@pytest.fixture
def convnet_result(trained_output):
    from ml import artifacts

    folder = trained_output / "convnet"
    metadata = artifacts.read_json(folder / "metadata.json")
    return {
        **metadata,
        "output_dir": str(folder),
        "model_path": str(folder / "model.keras"),
        "metadata_path": str(folder / "metadata.json"),
    }


@pytest.fixture(autouse=True)
def _training_dirs(settings, tmp_path):
    """Registered models and default run folders go to this test's temporary folder."""
    settings.MODEL_DIR = tmp_path / "models"
    settings.VAR_DIR = tmp_path / "var"
    settings.SHIPPED_MODEL_DIR = tmp_path / "shipped"

"""run_training end to end on a trivially separable synthetic data set (class = dominant colour)."""

import json

import numpy as np
import pytest

from ml.artifacts import load_model_verified, sha256_file
from ml.classes import CLASS_NAMES
from ml.dataset import DatasetError, scan_dataset
from ml.images import prepare_image
from ml.pipeline import main, run_training

from .synthetic import write_dataset


@pytest.fixture(scope="module")
def separable_run(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("colours") / "data", per_class=24, size=40)
    out = tmp_path_factory.mktemp("run")
    result = run_training(
        root,
        "convnet",
        out,
        epochs=8,
        image_size=32,
        split_mode="grouped",
        seed=0,
        batch_size=8,
        augment=True,
        progress=False,
        block_size=4,
        fractions=(0.5, 0.25, 0.25),
        colour_report=True,
    )
    return root, out, result


@pytest.mark.slow
def test_separable_set_reaches_full_test_accuracy(separable_run):
    _, _, result = separable_run
    assert result["metrics"]["test"]["accuracy"] == 1.0
    assert result["metrics"]["test"]["macro_f1"] == 1.0
    assert result["metrics"]["val"]["accuracy"] == 1.0
    assert result["metrics"]["test"]["n"] == len(result["split"]["splits"]["test"]) >= 16


@pytest.mark.slow
def test_run_folder_and_metadata(separable_run):
    root, out, result = separable_run
    for name in (
        "model.keras",
        "metadata.json",
        "split.json",
        "smear_check.json",
        "history.json",
        "train_config.json",
        "predictions.json",
        "colour_report.json",
        "plots/training_curves.png",
        "plots/confusion_matrix_test.png",
        "plots/confusion_matrix_val.png",
    ):
        assert (out / name).is_file(), name
    assert not (out / "backup").exists()
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata == {k: v for k, v in result.items() if k not in ("output_dir", "model_path", "metadata_path")}
    assert metadata["sha256"] == sha256_file(out / "model.keras")
    assert metadata["class_names"] == list(CLASS_NAMES) and metadata["input_size"] == 32
    assert metadata["architecture"] == "convnet" and metadata["params"] > 0
    assert metadata["data_fingerprint"] == scan_dataset(root).fingerprint()
    assert metadata["split"]["mode"] == "grouped" and metadata["split"]["block_size"] == 4
    assert metadata["versions"]["keras"] and metadata["versions"]["backend"]
    assert metadata["preprocessing"]["in_model_normalisation"].startswith("Rescaling(1/255)")
    assert metadata["plots"]["training_curves"] == "plots/training_curves.png"
    assert metadata["hardware"] and metadata["trained_at"].endswith("+00:00")
    assert 1 <= metadata["epochs_run"] <= 8 and metadata["training_seconds"] > 0


@pytest.mark.slow
def test_predictions_file_holds_every_validation_and_test_image(separable_run):
    _, out, result = separable_run
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["class_names"] == list(CLASS_NAMES)
    for part in ("val", "test"):
        recorded = predictions[part]
        assert recorded["files"] == [entry["file"] for entry in result["split"]["splits"][part]]
        probabilities = np.asarray(recorded["probabilities"])
        assert probabilities.shape == (len(recorded["files"]), len(CLASS_NAMES))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
        accuracy = float(np.mean(probabilities.argmax(axis=1) == np.asarray(recorded["labels"])))
        assert accuracy == result["metrics"][part]["accuracy"]


@pytest.mark.slow
def test_colour_report_measures_the_model_against_colour(separable_run):
    _, out, result = separable_run
    report = json.loads((out / "colour_report.json").read_text())
    assert report["test"]["accuracy"] == result["metrics"]["test"]["accuracy"]
    variants = report["robustness"]["variants"]
    assert {
        "original",
        "brightness_x0.85",
        "hue_-10deg",
        "colour_normalised",
        "colour_normalised_rgb",
        "grayscale",
    } <= set(variants)
    assert variants["original"]["accuracy"] == result["metrics"]["test"]["accuracy"]
    assert report["colour_baselines"]["rgb"]["test"]["accuracy"] == 1.0  # class = dominant colour here
    for space, variant in (("rgb", "colour_normalised_rgb"), ("cielab", "colour_normalised")):
        comparison = report["comparisons"][space]
        bar = report["colour_baselines"][space]["best_normalised_accuracy"]
        assert comparison["model_normalised_accuracy"] == variants[variant]["accuracy"]
        assert comparison["margin_points"] == pytest.approx(100 * (variants[variant]["accuracy"] - bar))
    assert report["beats_colour_baseline"] == all(
        c["margin_points"] >= c["required_margin_points"] == 10.0 for c in report["comparisons"].values()
    )


@pytest.mark.slow
def test_saved_model_serves_prepared_uploads(separable_run):
    root, out, result = separable_run
    model = load_model_verified(out / "model.keras", result["sha256"])
    test_files = [entry["file"] for entry in result["split"]["splits"]["test"]]
    x = np.stack([prepare_image(root / name, result["input_size"]) for name in test_files])
    predicted = np.asarray(model.predict(x, verbose=0)).argmax(axis=1)
    folders = {"Benign": 0, "Early": 1, "Pre": 2, "Pro": 3}
    assert predicted.tolist() == [folders[name.split("/")[0]] for name in test_files]


@pytest.mark.slow
def test_cli_reproduces_a_recorded_split(separable_run, tmp_path, capsys):
    root, out, result = separable_run
    code = main(
        [
            "--data",
            str(root),
            "--arch",
            "convnet",
            "--output",
            str(tmp_path / "again"),
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--quiet",
            "--split-record",
            str(out / "metadata.json"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Architecture" in printed and "convnet" in printed
    again = json.loads((tmp_path / "again" / "metadata.json").read_text())
    assert again["split"]["splits"] == result["split"]["splits"]
    assert again["input_size"] == 16


def test_cli_trains_with_reinhards_colour_normalisation(separable_run, tmp_path):
    root, out, _ = separable_run
    args = ["--data", str(root), "--arch", "convnet", "--epochs", "1", "--image-size", "16", "--quiet"]
    args += ["--split-record", str(out / "metadata.json"), "--output", str(tmp_path / "lab")]
    assert main([*args, "--lab-colour"]) == 0
    metadata = json.loads((tmp_path / "lab" / "metadata.json").read_text())
    assert metadata["train_config"]["normalisation"] == "per_image_lab"
    assert "CIELAB" in metadata["preprocessing"]["in_model_normalisation"]
    with pytest.raises(SystemExit, match="not both"):
        main([*args, "--lab-colour", "--per-image-colour"])
    with pytest.raises(SystemExit, match="goes with --lab-colour"):
        main([*args, "--balance-colour"])


def test_cli_reports_bad_data(tmp_path, capsys):
    (tmp_path / "data" / "Mystery").mkdir(parents=True)
    code = main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--epochs", "1"])
    assert code == 2
    assert "Mystery" in capsys.readouterr().err


def test_rerun_in_same_folder_with_other_split_settings_is_refused(tmp_path):
    root = write_dataset(tmp_path / "data", per_class=6, size=16)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "split.json").write_text(
        json.dumps(
            {
                "format": 1,
                "mode": "random",
                "seed": 1,
                "fractions": [0.7, 0.15, 0.15],
                "block_size": None,
                "max_per_class": None,
                "splits": {},
            }
        )
    )
    with pytest.raises(ValueError, match="new output folder"):
        run_training(
            root, "convnet", tmp_path / "out", epochs=1, image_size=16, split_mode="grouped", seed=1, progress=False
        )


def test_max_per_class_for_smoke_runs(tmp_path):
    root = write_dataset(tmp_path / "data", per_class=10, size=16)
    result = run_training(
        root,
        "convnet",
        tmp_path / "out",
        epochs=1,
        image_size=16,
        split_mode="random",
        seed=0,
        batch_size=8,
        progress=False,
        max_per_class=5,
    )
    assert result["dataset"]["used"] == 20 and result["split"]["max_per_class"] == 5
    assert result["smear_check"] is None and result["smear_check_false_flag_rate"] is None  # < 20 to fit on
    assert result["data_fingerprint"] != scan_dataset(root).fingerprint()
    with pytest.raises(DatasetError):
        run_training(tmp_path / "missing", "convnet", tmp_path / "out2", epochs=1, image_size=16)
    with pytest.raises(ValueError, match="Unknown architecture"):
        run_training(root, "alexnet", tmp_path / "out3", epochs=1, image_size=16)

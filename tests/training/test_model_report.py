"""`manage.py model_report`: robustness, colour-only baseline, smear check, latency, on the tiny
synthetic data set and the tiny convnet of tests/training/conftest.py."""

import io
import json
import shutil

import pytest
from django.core.management import CommandError, call_command

from ml import site_shifts
from ml.artifacts import read_json
from ml.smear_check import SmearCheck
from training import registry
from training.models import ModelRecord

pytestmark = pytest.mark.django_db

VARIANTS = [
    "original",
    "brightness_x0.85",
    "brightness_x1.15",
    "hue_+10deg",
    "hue_-10deg",
    "saturation_x0.7",
    "saturation_x1.3",
    "colour_normalised_rgb",
    "colour_normalised",
    "grayscale",
]
FAST = ["--latency-runs", "3", "--smear-size", "64"]


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("model_report", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def active_version(convnet_result):
    version = registry.register_model(convnet_result)
    registry.activate(version)
    return version


def test_json_report_for_the_active_model(active_version, synthetic_data, tmp_path):
    out_dir = tmp_path / "report"
    out, _ = run("--data", str(synthetic_data), "--format", "json", "--output-dir", str(out_dir), *FAST)
    report = json.loads(out)  # nothing but JSON on stdout

    assert report["model"]["name"] == active_version.name
    assert report["model"]["file_size_bytes"] == registry.model_path(active_version).stat().st_size
    split = active_version.record.split
    assert report["data"]["split_mode"] == split["mode"] == "random"
    assert report["data"]["counts"] == split["counts"]
    n_test = len(split["splits"]["test"])
    # The recorded test split, rebuilt: the same images and the same accuracy as at training time.
    assert report["test"]["n"] == n_test
    assert report["test"]["accuracy"] == active_version.test_accuracy == 1.0

    variants = report["robustness"]["variants"]
    assert list(variants) == VARIANTS
    for variant in variants.values():
        assert 0.0 <= variant["accuracy"] <= 1.0
        assert variant["drop_accuracy_points"] == pytest.approx(100 * (1.0 - variant["accuracy"]))
        assert 0.0 <= variant["changed_predictions"] <= 1.0
    assert variants["original"]["accuracy"] == 1.0

    assert set(report["colour_baselines"]) == set(report["comparisons"]) == {"rgb", "cielab"}
    for space, variant_name in (("rgb", "colour_normalised_rgb"), ("cielab", "colour_normalised")):
        baseline = report["colour_baselines"][space]
        assert baseline["reference"]["space"] == space
        assert baseline["test"]["accuracy"] == 1.0  # the synthetic classes are colours
        assert baseline["n_train"] == len(split["splits"]["train"])
        for key in ("normalised_test", "normalised_train_normalised_test"):
            assert baseline[key]["n"] == n_test
        comparison = report["comparisons"][space]
        assert comparison["variant"] == variant_name
        assert comparison["model_normalised_accuracy"] == variants[variant_name]["accuracy"]
        assert comparison["baseline_best_normalised_accuracy"] == baseline["best_normalised_accuracy"]
        assert comparison["margin_points"] == pytest.approx(
            100 * (comparison["model_normalised_accuracy"] - comparison["baseline_best_normalised_accuracy"])
        )
        assert comparison["beats_colour_baseline"] == (comparison["margin_points"] >= 10.0)
    assert report["beats_colour_baseline"] == all(c["beats_colour_baseline"] for c in report["comparisons"].values())

    smear = report["smear_check"]
    assert smear["image_size"] == 64 and smear["n_fit"] == len(split["splits"]["train"])
    val = smear["false_flags_val"]
    assert val["n"] == len(split["splits"]["val"]) and 0 <= val["rate"] <= 1
    assert val["flagged"] == len(val["examples"]) or len(val["examples"]) == 20

    latency = report["latency"]
    assert latency["runs"] == 3 and latency["median_ms"] > 0 and latency["p90_ms"] >= latency["min_ms"]

    # Files: the report (JSON and text) and the smear check's parameters, loadable as a check.
    assert read_json(out_dir / "report.json")["model"]["sha256"] == active_version.sha256
    text = (out_dir / "report.txt").read_text()
    assert "Augmentation-family colour shifts" in text and "Site shifts (independent of the training" in text
    site = report["site_shifts"]
    assert set(site["families"]) == set(site_shifts.FAMILIES)
    assert site["ood"]["calibrated_on"]["split"] == "val" and 0 <= site["plain"]["flagged_rate"] <= 1
    assert site["ood_attached"] is False
    params = read_json(out_dir / "smear_check.json")
    assert params["fitted_on"]["model"] == active_version.name
    check = SmearCheck.from_dict(params)
    assert check.threshold == smear["threshold"] and check.image_size == 64


def test_text_report_names_every_part(active_version, synthetic_data, tmp_path, settings):
    out, _ = run("--data", str(synthetic_data), "--model", active_version.name, *FAST, "--verbosity", "0")
    for expected in (
        "Model report: " + active_version.name,
        "Augmentation-family colour shifts",
        "Site shifts (independent of the training augmentation",
        "wrong answers under credited shifts flagged",
        "grayscale",
        "colour_normalised",
        "colour_normalised_rgb",
        "Colour-only baseline",
        "RGB-normalised",
        "CIELAB-normalised",
        "Smear check",
        "false flags on validation images",
        "Latency:",
        "Model file:",
    ):
        assert expected in out, expected
    # Without --output-dir the files go under VAR_DIR/reports/<version>-<time>/.
    (folder,) = (settings.VAR_DIR / "reports").iterdir()
    assert folder.name.startswith(active_version.name)
    assert {p.name for p in folder.iterdir()} == {"report.json", "report.txt", "smear_check.json"}


def test_a_model_without_a_recorded_split_is_refused(active_version, synthetic_data):
    ModelRecord.objects.filter(version=active_version).update(split={})
    with pytest.raises(CommandError, match="no recorded split"):
        run("--data", str(synthetic_data), *FAST)


def test_data_that_does_not_match_the_recorded_split_is_refused(active_version, synthetic_eval_data):
    with pytest.raises(CommandError, match="does not match"):
        run("--data", str(synthetic_eval_data), *FAST)


def test_changed_image_bytes_are_refused(active_version, synthetic_data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(synthetic_data, copy)
    test_file = active_version.record.split["splits"]["test"][0]["file"]
    (copy / test_file).write_bytes((synthetic_data / test_file).read_bytes() + b"\0")
    with pytest.raises(CommandError, match="changed"):
        run("--data", str(copy), *FAST)


def test_no_active_model_and_bad_arguments(synthetic_data, convnet_result):
    with pytest.raises(CommandError, match="No model version is active"):
        run("--data", str(synthetic_data))
    version = registry.register_model(convnet_result)
    with pytest.raises(CommandError, match="--latency-runs must be at least 1"):
        run("--data", str(synthetic_data), "--model", version.name, "--latency-runs", "0")


def test_attach_ood_stores_the_ood_model_that_serving_uses(active_version, synthetic_data, tmp_path):
    from training import gates

    assert not active_version.ood
    out, _ = run(
        "--data", str(synthetic_data), "--model", active_version.name, *FAST, "--attach-ood", "--verbosity", "0"
    )
    assert "stored on the model version" in out
    active_version.refresh_from_db()
    params = active_version.ood
    assert params["threshold"] is not None and params["calibrated_on"]["split"] == "val"
    gates.clear_cache()
    detector = gates.ood_for(active_version)
    assert detector is not None and detector.threshold == params["threshold"]
    tampered = {**params, "threshold": params["threshold"] * 2}
    with pytest.raises(registry.RegistryError, match="digest"):
        registry.attach_ood(active_version, tampered)

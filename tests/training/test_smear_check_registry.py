"""The "not a stained smear" check travels from a training run into ModelVersion.smear_check
(register_model), and can be stored on older versions (attach_smear_check, model_report)."""

import io
import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from ml.artifacts import read_json
from ml.smear_check import BLANK, SmearCheck
from training import registry
from training.models import ModelVersion

pytestmark = pytest.mark.django_db

METADATA_ONLY = ("model_path", "metadata_path", "output_dir")


def without_check(result):
    """A training result as runs made before the check was fitted look."""
    return {k: v for k, v in result.items() if k not in ("smear_check", "smear_check_false_flag_rate")}


def test_register_model_stores_the_runs_check(convnet_result, settings):
    params = convnet_result["smear_check"]
    assert params and params["image_size"] == 224  # fitted by run_training, at 224 px
    version = registry.register_model(convnet_result)
    version.refresh_from_db()
    assert version.smear_check == params
    check = registry.smear_check_for(version)
    assert isinstance(check, SmearCheck) and check.image_size == 224 and check.n_fit == params["n_fit"]
    assert check.reasons(np.full((224, 224, 3), 210, np.uint8)) == [BLANK]
    assert registry.smear_check_false_flag_rate(version) == convnet_result["smear_check_false_flag_rate"]
    # The registered metadata.json keeps it too.
    assert read_json(settings.MODEL_DIR / version.name / "metadata.json")["smear_check"] == params


def test_a_version_without_a_check(convnet_result):
    version = registry.register_model(without_check(convnet_result))
    version.refresh_from_db()
    assert version.smear_check == {}
    assert registry.smear_check_for(version) is None and registry.smear_check_false_flag_rate(version) is None
    # Registering the same run again, now with its check, fills it in (no second version).
    again = registry.register_model(convnet_result)
    assert again.pk == version.pk and ModelVersion.objects.count() == 1
    assert ModelVersion.objects.get(pk=version.pk).smear_check == convnet_result["smear_check"]


def test_a_run_with_an_unusable_check_still_registers(convnet_result):
    broken = {**convnet_result, "smear_check": {**convnet_result["smear_check"], "features": ["x"]}}
    version = registry.register_model(broken)
    assert ModelVersion.objects.get(pk=version.pk).smear_check == {}


def attach(*args):
    out = io.StringIO()
    call_command("attach_smear_check", *args, stdout=out)
    return out.getvalue()


def test_attach_command_accepts_a_smear_check_file_or_a_metadata_file(convnet_result, tmp_path):
    version = registry.register_model(without_check(convnet_result))
    folder = convnet_result["output_dir"]
    out = attach(version.name, f"{folder}/smear_check.json")
    assert f"Stored the smear check on model version {version.name}" in out and "validation smears" in out
    assert ModelVersion.objects.get(pk=version.pk).smear_check == convnet_result["smear_check"]

    ModelVersion.objects.filter(pk=version.pk).update(smear_check={})
    attach(str(version.pk), convnet_result["metadata_path"])
    stored = ModelVersion.objects.get(pk=version.pk)
    assert stored.smear_check == convnet_result["smear_check"]
    assert registry.smear_check_false_flag_rate(stored) == convnet_result["smear_check_false_flag_rate"]


def test_attach_refuses_unusable_checks(convnet_result, tmp_path):
    version = registry.register_model(without_check(convnet_result))
    params = convnet_result["smear_check"]
    cases = {
        "small.json": ({**params, "image_size": 64}, "fitted on 64x64"),
        "features.json": ({**params, "features": params["features"][:-1]}, "other features"),
        "empty.json": ({}, "No smear-check parameters"),
        "old-run.json": (without_check(convnet_result), "No smear-check parameters"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(data, default=str))
        with pytest.raises(CommandError, match=message):
            attach(version.name, str(tmp_path / name))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CommandError, match="Cannot read"):
        attach(version.name, str(tmp_path / "bad.json"))
    with pytest.raises(CommandError, match="No model version"):
        attach("no-such-version", f"{convnet_result['output_dir']}/smear_check.json")
    assert ModelVersion.objects.get(pk=version.pk).smear_check == {}


def report(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("model_report", *args, stdout=out, stderr=err)
    return out.getvalue()


def test_model_report_attaches_the_check_it_fits(convnet_result, synthetic_data, tmp_path):
    version = registry.register_model(without_check(convnet_result))
    with pytest.raises(CommandError, match="fitted at 224px"):
        report("--data", str(synthetic_data), "--model", version.name, "--smear-size", "64", "--attach-smear-check")
    assert ModelVersion.objects.get(pk=version.pk).smear_check == {}

    out = report(
        "--data",
        str(synthetic_data),
        "--model",
        version.name,
        "--latency-runs",
        "1",
        "--output-dir",
        str(tmp_path / "report"),
        "--attach-smear-check",
    )
    assert f"stored on model version {version.name}" in out
    stored = ModelVersion.objects.get(pk=version.pk)
    saved = read_json(tmp_path / "report" / "smear_check.json")
    assert stored.smear_check == saved and saved["fitted_on"]["model"] == version.name
    assert saved["validation"]["n"] == len(version.record.split["splits"]["val"])
    assert registry.smear_check_for(stored).image_size == 224
    assert read_json(tmp_path / "report" / "report.json")["smear_check"]["attached"] is True

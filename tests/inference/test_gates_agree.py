"""The portal's worker (one image and micro-batched) and `manage.py diagnose` apply the SAME gates
(training.gates: smear check, OOD score, low confidence) and give the same flags on the same images."""

import csv
import io

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from inference.models import AnalysisJob, Prediction
from inference.tasks import analyse_smear
from ml import ood, site_shifts
from ml.images import prepare_image
from ml.smear_check import SmearCheck
from tests.inference.conftest import MODEL_IMAGE_SIZE
from tests.inference.test_not_a_smear_flow import png_upload
from tests.inference.test_smear_gate import synthetic_smear
from training import gates, registry


def _split_between(values):
    """A threshold in the widest gap between the middle values: some above, some below, far from both."""
    values = np.sort(np.asarray(values, dtype=float))
    lo, hi = max(1, len(values) // 4), min(len(values) - 1, 3 * len(values) // 4 + 1)
    i = max(range(lo, hi), key=lambda k: values[k] - values[k - 1])
    return float((values[i] + values[i - 1]) / 2)


@pytest.fixture
def images():
    base = {f"smear{i}.png": synthetic_smear(700 + i) for i in range(4)}
    shifted = {
        "cool.png": site_shifts.apply("wb_cool", synthetic_smear(710)),
        "hue.png": site_shifts.apply("hue_lab_+12", synthetic_smear(711)),
        "stain.png": site_shifts.apply("stain_heavy", synthetic_smear(712)),
        "jpeg.png": site_shifts.apply("jpeg_q30", synthetic_smear(713)),
    }
    return {**base, **shifted, "blank.png": np.full((224, 224, 3), 250, np.uint8)}


@pytest.fixture
def gated_version(model_version, images, settings, fresh_model_cache):
    gates.clear_cache()
    registry.attach_smear_check(
        model_version, SmearCheck().fit(np.stack([synthetic_smear(s) for s in range(40)])).to_dict()
    )
    model = registry.load_model(model_version)
    fit = np.stack([prepare_image(synthetic_smear(s), MODEL_IMAGE_SIZE) for s in range(40)])
    features, _ = ood.predict_features(model, fit)
    detector = ood.MahalanobisOOD.fit(features, np.arange(40) % 4, n_components=8)
    detector = ood.MahalanobisOOD.from_dict(detector.to_dict())
    prepared = np.stack([prepare_image(p, MODEL_IMAGE_SIZE) for name, p in images.items() if name != "blank.png"])
    f, p = ood.predict_features(model, prepared)
    detector.threshold = _split_between(detector.score(f))
    settings.ATTENTION_THRESHOLD = _split_between(p.max(axis=1))
    registry.attach_ood(model_version, detector.to_dict())
    yield model_version
    gates.clear_cache()


def _diagnose(tmp_path, images, version):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
    out = io.StringIO()
    call_command("diagnose", str(folder), "--model", version.name, "--format", "csv", stdout=out)
    return {row["path"].rsplit("/", 1)[-1]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}


def _worker(world, images, run):
    case = world.submit_case(files=[png_upload(name, pixels) for name, pixels in images.items()])
    run(case)
    return {p.smear.original_filename: p for p in Prediction.objects.filter(smear__case=case).select_related("smear")}


def _assert_same(worker_rows, cli_rows):
    assert set(worker_rows) == set(cli_rows)
    for name, prediction in worker_rows.items():
        row = cli_rows[name]
        assert row["label"] == prediction.label, name
        assert row["flag"] == gates.flag_text(prediction.flags), name
        if prediction.ood_score is None:
            assert row["ood_score"] == ""
        else:
            assert float(row["ood_score"]) == pytest.approx(prediction.ood_score, rel=1e-3, abs=1e-3)


def test_worker_and_diagnose_flag_the_same_images(world, gated_version, images, tmp_path):
    def one_at_a_time(case):
        for job in AnalysisJob.objects.filter(smear__case=case).order_by("pk"):
            assert analyse_smear(job.pk) == "done"

    worker_rows = _worker(world, images, one_at_a_time)
    cli_rows = _diagnose(tmp_path, images, gated_version)
    _assert_same(worker_rows, cli_rows)
    flags = [set(p.flags) for p in worker_rows.values()]
    # Not trivial: each gate flags some images and passes others.
    assert any(gates.OUTSIDE_VALIDATED in f for f in flags) and any(gates.OUTSIDE_VALIDATED not in f for f in flags)
    assert any(gates.LOW_CONFIDENCE in f for f in flags) and any(gates.LOW_CONFIDENCE not in f for f in flags)
    assert worker_rows["blank.png"].label == gates.NOT_A_SMEAR
    assert cli_rows["blank.png"]["flag"].startswith("not a blood smear")
    assert all((p.ood_score is not None) == p.is_smear for p in worker_rows.values())


def test_micro_batched_worker_agrees_with_diagnose(world, gated_version, images, tmp_path, settings):
    settings.INFERENCE_BATCH_MAX = 16

    def batched(case):
        first = AnalysisJob.objects.filter(smear__case=case).order_by("enqueued_at", "pk").first()
        assert analyse_smear(first.pk) == "done"
        assert set(AnalysisJob.objects.filter(smear__case=case).values_list("status", flat=True)) == {"done"}

    _assert_same(_worker(world, images, batched), _diagnose(tmp_path, images, gated_version))


def test_without_ood_or_check_only_confidence_flags(world, model_version, tmp_path, settings, fresh_model_cache):
    gates.clear_cache()
    settings.ATTENTION_THRESHOLD = 1.01  # every answer is below it
    images = {"a.png": synthetic_smear(1), "b.png": synthetic_smear(2)}
    rows = _diagnose(tmp_path, images, model_version)
    assert {r["flag"] for r in rows.values()} == {gates.LOW_CONFIDENCE}
    assert {r["ood_score"] for r in rows.values()} == {""}
    settings.ATTENTION_THRESHOLD = 0.0
    (tmp_path / "again").mkdir()
    rows = _diagnose(tmp_path / "again", images, model_version)
    assert {r["flag"] for r in rows.values()} == {""}

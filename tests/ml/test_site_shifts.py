"""ml.site_shifts and ml.ood: site shifts written independently of the augmentation, crediting,
summaries, and the Mahalanobis OOD score."""

import ast
from pathlib import Path

import numpy as np
import pytest

from ml import ood, site_report, site_shifts


def _image(seed=0, size=64):
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), (235, 225, 240), np.float64)
    image[16:40, 16:40] = (120, 60, 150)  # a violet "nucleus"
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def test_transforms_do_not_use_the_training_augmentation():
    tree = ast.parse(Path(site_shifts.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {"keras", "augmentation", "layers", "ml.augmentation", "ml.layers"} & imported


@pytest.mark.parametrize("name", site_shifts.VARIANT_NAMES)
def test_every_variant_keeps_shape_changes_pixels_and_is_deterministic(name):
    image = _image()
    out = site_shifts.apply(name, image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out, site_shifts.apply(name, image))
    assert not np.array_equal(out, image)
    batch = site_shifts.apply(name, np.stack([image, _image(1)]))
    assert batch.shape == (2, *image.shape) and np.array_equal(batch[0], out)


def test_stain_scaling_in_optical_density():
    image = _image()
    assert np.abs(site_shifts.stain_scale(image, 1.0, 1.0).astype(int) - image).max() <= 1  # identity
    paler = site_shifts.stain_scale(image, 0.5, 0.5)
    heavier = site_shifts.stain_scale(image, 1.5, 1.5)
    nucleus = (slice(20, 36), slice(20, 36))
    assert paler[nucleus].mean() > image[nucleus].mean() > heavier[nucleus].mean()
    # skimage's matrix, written out: H row and its inverse
    assert np.allclose(site_shifts.RGB_FROM_HED[0], (0.65, 0.70, 0.29))
    assert np.allclose(site_shifts.HED_FROM_RGB @ site_shifts.RGB_FROM_HED, np.eye(3))


def test_simple_families_do_what_they_say():
    image = _image()
    warm = site_shifts.white_balance(image, (1.08, 1.0, 0.9)).astype(int)
    assert warm[..., 0].mean() > image[..., 0].mean() and warm[..., 2].mean() < image[..., 2].mean()
    grey = site_shifts.luminance_blend(image, 1.0)
    assert np.abs(grey[..., 0].astype(int) - grey[..., 2]).max() <= 1
    kernel = site_shifts.disc_kernel(3)
    assert kernel.shape == (7, 7) and kernel.sum() == pytest.approx(1.0) and kernel[0, 0] < kernel[3, 3]
    blurred = site_shifts.defocus(image, 3)
    assert blurred.std() < image.std()
    assert site_shifts.jpeg(image, 30).shape == image.shape


def test_leave_one_family_out_crediting():
    shipped = {"augment": True, "augment_strength": 1.0, "augment_color": True}
    assert site_shifts.trained_families(shipped) == {"gamma", "saturation", "hue"}
    assert site_shifts.trained_families({**shipped, "augment_stain": 0.05}) >= {"stain"}
    assert site_shifts.trained_families({**shipped, "augment": False}) == set()
    trained = site_shifts.trained_families(shipped)
    assert site_shifts.is_credited("stain_heavy", trained) and not site_shifts.is_credited("hue_lab_+12", trained)
    assert site_shifts.is_credited("combo_other_lab", trained)  # stain + white balance + JPEG
    assert not site_shifts.is_credited("combo_lamp_stain", trained)  # includes gamma
    # Site augmentation takes the families it trains away from the credit, and only those.
    optics = site_shifts.trained_families({**shipped, "augment_site": ["defocus", "scale", "noise"]})
    assert optics == {"gamma", "saturation", "hue", "defocus", "scale"}
    assert site_shifts.is_credited("combo_other_lab", optics) and not site_shifts.is_credited(
        "combo_other_camera", optics
    )
    codec = site_shifts.trained_families({**shipped, "augment_site": ["white_balance", "jpeg"]})
    assert {"white_balance", "jpeg"} <= codec and not site_shifts.is_credited("combo_other_lab", codec)


def test_summary_counts_credited_wrong_answers_and_flags():
    y = np.array([0, 1, 0, 1])
    right = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    two_wrong = np.array([[0.45, 0.55], [0.95, 0.05], [0.9, 0.1], [0.1, 0.9]])  # one low confidence, one confident
    results = {
        "original": (right, np.zeros(4)),
        "wb_cool": (two_wrong, np.array([0, 5.0, 0, 0])),
        "hue_lab_+12": (two_wrong, None),
    }
    summary = site_shifts.summarise(results, y, {"augment_color": True}, confidence_threshold=0.6, ood_threshold=1.0)
    assert summary["plain"] == {"accuracy": 1.0, "flagged_rate": 0.0}
    assert summary["variants"]["wb_cool"]["drop_points"] == 50.0
    assert summary["variants"]["wb_cool"]["wrong_flagged"] == 2  # low confidence + OOD
    assert not summary["variants"]["hue_lab_+12"]["credited"]
    assert summary["wrong_under_credited_shifts"] == 2 and summary["wrong_flagged_rate"] == 1.0
    assert summary["worst_family"]["family"] == "white_balance"
    assert "white_balance" in site_shifts.format_table(summary)


def test_a_familys_credit_rests_on_its_credited_variants_only():
    """With colour augmentation, "another lamp and stain" (gamma in it) is not credited, "another lab"
    is: the combined family's credited figures, the worst credited family and the mean over credited
    families must not count the uncredited combination's errors."""
    y = np.array([0, 1, 0, 1])
    right = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    all_wrong = right[:, ::-1]
    results = {"original": (right, None), "combo_other_lab": (right, None), "combo_lamp_stain": (all_wrong, None)}
    summary = site_shifts.summarise(results, y, {"augment_color": True}, confidence_threshold=0.6)
    combined = summary["families"]["combined"]
    assert (combined["credited_variants"], combined["variants"]) == (1, 2)
    assert combined["worst_drop_points"] == 100.0  # every variant, as the table shows them
    assert combined["credited_figures"]["worst_drop_points"] == 0.0
    assert summary["worst_family"] == {"family": "combined", "worst_drop_points": 0.0}
    assert summary["mean_credited_drop_points"] == 0.0
    assert "1/2" in site_shifts.format_table(summary)


def test_mahalanobis_ood_scores_shifted_features_higher_and_round_trips():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 20))
    labels = np.repeat(np.arange(3), 100)
    train = centres[labels] + rng.normal(0, 1, (300, 20))
    detector = ood.MahalanobisOOD.fit(train, labels, n_components=8)
    near = centres[[0, 1, 2]] + rng.normal(0, 1, (3, 20))
    far = near + 6.0
    assert detector.score(far).min() > detector.score(near).max()
    params = detector.to_dict()
    restored = ood.MahalanobisOOD.from_dict(params)
    assert np.allclose(restored.score(near), detector.score(near), rtol=1e-4)
    assert params["digest"] == ood.digest(params)
    params["residual_scale"] *= 2
    assert params["digest"] != ood.digest(params)  # altered parameters no longer match their digest


def test_threshold_calibration_respects_the_flag_budget():
    scores = np.arange(100, dtype=float)
    confident = np.tile([0.9, 0.1], (100, 1))
    threshold = site_report.calibrate_threshold(scores, confident, 0.6, 0.05)
    assert int((scores > threshold).sum()) == 5
    unsure = confident.copy()
    unsure[:3] = (0.5, 0.5)  # 3 already flagged by low confidence: only 2 by OOD
    threshold = site_report.calibrate_threshold(scores, unsure, 0.6, 0.05)
    assert int((scores[3:] > threshold).sum()) == 2


def test_the_shipped_model_carries_its_ood_model():
    from ml import artifacts

    (metadata_path,) = (Path(__file__).resolve().parents[2] / "models").glob("*/metadata.json")
    folder = metadata_path.parent
    metadata = artifacts.read_json(metadata_path)
    params = metadata["ood"]
    assert params["digest"] == ood.digest(params)
    detector = ood.MahalanobisOOD.from_dict(params)
    assert detector.threshold > 0 and detector.dimension == 1280
    assert params["calibrated_on"]["split"] == "val"
    assert artifacts.sha256_file(folder / "model.keras") == metadata["sha256"]

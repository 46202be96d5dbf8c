"""training.gates.smear_verdict: the stored "not a stained smear" check of a model version, on
synthetic 224 px images made here (smear-like frames, a blank frame, a defocused frame)."""

import io

import numpy as np
import pytest
from PIL import Image

from ml import smear_check as sc
from training import gates as smear_gate
from training.gates import smear_verdict
from training.models import ModelVersion

SIZE = 224


def through_jpeg(pixels, quality=88):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def synthetic_smear(seed):
    """A stained-smear-like field: pale lilac background, pink erythrocytes with a paler centre, a
    couple of large violet leukocyte nuclei, a little optical blur, sensor noise and JPEG."""
    import cv2

    rng = np.random.default_rng(seed)
    background = np.array((238, 229, 241), np.float32) + rng.normal(0, 3, 3)
    field = np.empty((SIZE, SIZE, 3), np.float32)
    field[:] = background
    for _ in range(int(rng.integers(28, 42))):
        centre = (int(rng.integers(0, SIZE)), int(rng.integers(0, SIZE)))
        radius = int(rng.integers(9, 14))
        cv2.circle(field, centre, radius, tuple(float(v) for v in background - (40, 50, 32)), -1)
        cv2.circle(field, centre, radius // 2, tuple(float(v) for v in background - (18, 24, 14)), -1)
    for _ in range(int(rng.integers(1, 3))):
        centre = (int(rng.integers(25, SIZE - 25)), int(rng.integers(25, SIZE - 25)))
        colour = np.array((115, 62, 165), np.float32) + rng.normal(0, 6, 3)
        cv2.circle(field, centre, int(rng.integers(13, 20)), tuple(float(v) for v in colour), -1)
    field = cv2.GaussianBlur(field, (0, 0), 0.8) + rng.normal(0, 3, field.shape)
    return through_jpeg(np.clip(field, 0, 255).astype(np.uint8))


def defocused(seed):
    """The same kind of field seen badly out of focus (blurred by the optics, then sensor noise)."""
    import cv2

    rng = np.random.default_rng(seed + 77)
    blurred = cv2.GaussianBlur(synthetic_smear(seed).astype(np.float32), (0, 0), 6)
    return through_jpeg(np.clip(blurred + rng.normal(0, 2, blurred.shape), 0, 255).astype(np.uint8))


def blank(value=205):
    return np.full((SIZE, SIZE, 3), value, np.uint8)


@pytest.fixture(scope="module")
def params():
    """A check fitted on synthetic "training" smears, as retrain stores it on a version."""
    check = sc.SmearCheck().fit(np.stack([synthetic_smear(seed) for seed in range(48)]))
    return check.to_dict()


@pytest.fixture(autouse=True)
def empty_gate_cache():
    smear_gate.clear_cache()
    yield
    smear_gate.clear_cache()


def version_with(params, pk=1):
    return ModelVersion(pk=pk, name=f"v{pk}", smear_check=params)


def test_a_smear_like_image_passes(params):
    version = version_with(params)
    verdicts = [smear_verdict(version, synthetic_smear(seed)) for seed in range(900, 906)]
    assert verdicts.count((True, [])) >= 5, verdicts


@pytest.mark.parametrize(
    "make, reason",
    [
        (blank, sc.BLANK),
        (lambda: blank(30), sc.BLANK),
        (lambda: defocused(3), sc.OUT_OF_FOCUS),
    ],
    ids=["blank", "dark-blank", "out-of-focus"],
)
def test_blank_and_blurred_frames_are_flagged_with_a_reason(params, make, reason):
    is_smear, reasons = smear_verdict(version_with(params), make())
    assert is_smear is False
    assert reasons and reasons[0] == reason and all(isinstance(r, str) for r in reasons)
    assert smear_gate.reasons_text(reasons).startswith("Not a blood smear: " + reason)


def test_a_version_without_a_check_lets_everything_through():
    for stored in ({}, None):
        assert smear_verdict(version_with(stored), blank()) == (True, [])
    # Unusable stored parameters (other features, old format) check nothing rather than fail jobs.
    assert smear_verdict(version_with({"format": 99}), blank()) == (True, [])


def test_the_check_is_built_once_per_version_and_rebuilt_when_replaced(params, monkeypatch):
    built = []
    real = sc.SmearCheck.from_dict.__func__

    def counting(cls, data):
        built.append(data["threshold"])
        return real(cls, data)

    monkeypatch.setattr(sc.SmearCheck, "from_dict", classmethod(counting))
    version = version_with(params, pk=7)
    image = synthetic_smear(950)
    first = smear_verdict(version, image)
    assert smear_verdict(version_with(dict(params), pk=7), image) == first  # another row object, same id
    assert len(built) == 1
    # A re-attached check (other parameters, same version) is picked up.
    stricter = {**params, "threshold": 0.01, "min_threshold": 0.0}
    assert smear_verdict(version_with(stricter, pk=7), image)[0] is False
    assert built == [params["threshold"], 0.01]
    smear_verdict(version_with(params, pk=8), image)  # another version: its own entry
    assert len(built) == 3


def test_images_not_prepared_at_the_check_size_are_refused(params):
    version = version_with(params)
    with pytest.raises(ValueError, match="prepare_image"):
        smear_verdict(version, np.full((32, 32, 3), 200, np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        smear_verdict(version, blank().astype(np.float32))


@pytest.mark.django_db
def test_a_check_stored_on_a_version_round_trips_through_the_database(params):
    from training import registry

    version = ModelVersion.objects.create(
        name="gate-test", architecture="convnet", file_path="x/model.keras", sha256="0" * 64, input_size=32
    )
    assert version.smear_check == {}
    registry.attach_smear_check(version.name, {**params, "validation": {"n": 10, "flagged": 0, "rate": 0.0}})
    stored = ModelVersion.objects.get(pk=version.pk)
    assert smear_verdict(stored, blank())[0] is False
    assert smear_verdict(stored, synthetic_smear(960)) == (True, [])
    # A version loaded with its smear_check column deferred: the gate reads it itself.
    deferred = ModelVersion.objects.defer("smear_check").get(pk=version.pk)
    assert smear_verdict(deferred, defocused(5))[0] is False

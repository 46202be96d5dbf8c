"""The "not a stained blood smear" check, on synthetic smears and non-smears made here, and (when the
real data set is there) its false-flag rate on real images."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from ml import smear_check as sc
from ml.images import prepare_image

SIZE = 224


def jpeg(array, quality=90):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def smear_like(seed, size=SIZE, width=None):
    """A smear-like camera frame: pale violet background, red cells (pale rings), a few purple
    nuclei, optics blur, sensor noise, JPEG."""
    import cv2

    rng = np.random.default_rng(seed)
    width = width or size
    background = np.array((232, 226, 238), np.float32) + rng.normal(0, 4, 3)
    image = np.empty((size, width, 3), np.float32)
    image[:] = background
    yy, xx = np.mgrid[:size, :width]
    for _ in range(int(rng.integers(25, 40))):
        cy, cx, radius = rng.uniform(0, size), rng.uniform(0, width), rng.uniform(9, 13)
        distance = np.hypot(yy - cy, xx - cx)
        image[distance < radius] = background - (42, 46, 33)
        image[distance < radius * 0.5] = background - (22, 26, 18)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx, radius = rng.uniform(20, size - 20), rng.uniform(20, width - 20), rng.uniform(12, 20)
        image[np.hypot(yy - cy, xx - cx) < radius] = (110, 60, 170) + rng.normal(0, 8, 3)
    image = cv2.GaussianBlur(image, (0, 0), 0.7) + rng.normal(0, 3, image.shape)
    return jpeg(np.clip(image, 0, 255).astype(np.uint8))


def out_of_focus(seed):
    """A defocused frame: the optics blur the smear, then the sensor adds its noise."""
    import cv2

    rng = np.random.default_rng(seed + 500)
    blurred = cv2.GaussianBlur(smear_like(seed).astype(np.float32), (0, 0), 6)
    return jpeg(np.clip(blurred + rng.normal(0, 2, blurred.shape), 0, 255).astype(np.uint8))


def flat_grey(value=128):
    return np.full((SIZE, SIZE, 3), value, np.uint8)


def photo(seed):
    """A natural-photo-like frame: a saturated colour gradient across all hues, dark to bright."""
    import cv2

    rng = np.random.default_rng(seed)
    hue = np.tile(np.linspace(0, 360, SIZE, dtype=np.float32), (SIZE, 1))
    saturation = np.full((SIZE, SIZE), 0.8, np.float32)
    value = np.tile(np.linspace(0.35, 1.0, SIZE, dtype=np.float32)[:, None], (1, SIZE))
    rgb = cv2.cvtColor(np.dstack([hue, saturation, value]), cv2.COLOR_HSV2RGB) * 255
    return jpeg(np.clip(rgb + rng.normal(0, 3, rgb.shape), 0, 255).astype(np.uint8))


def screenshot(seed):
    """A screenshot-like frame: white page, blue title bar, grey side bar, lines of black 'words'."""
    rng = np.random.default_rng(seed)
    image = np.full((SIZE, SIZE, 3), 255, np.uint8)
    image[:22] = (40, 90, 180)
    image[:, :40] = (235, 235, 235)
    for top in range(34, SIZE - 10, 14):
        x = 50
        while x < SIZE - 20:
            width = int(rng.integers(10, 40))
            image[top : top + 7, x : min(x + width, SIZE - 8)] = (30, 30, 30)
            x += width + 6
    return image


@pytest.fixture(scope="module")
def fitted():
    return sc.SmearCheck().fit(np.stack([smear_like(seed) for seed in range(80)]))


def test_real_looking_smears_pass(fitted):
    held_out = np.stack([smear_like(seed) for seed in range(1000, 1030)])
    assert fitted.is_smear(held_out).mean() >= 0.9
    assert fitted.threshold >= sc.MIN_THRESHOLD and fitted.image_size == SIZE and fitted.n_fit == 80


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: out_of_focus(1), sc.OUT_OF_FOCUS),
        (lambda: flat_grey(128), sc.BLANK),
        (lambda: flat_grey(250), sc.BLANK),
        (lambda: photo(2), sc.COLOURS),
        (lambda: screenshot(3), sc.GRAPHIC),
    ],
    ids=["out-of-focus", "grey-frame", "white-frame", "photo", "screenshot"],
)
def test_non_smears_are_flagged_with_a_reason(fitted, make, reason):
    image = make()
    result = fitted.check(image)
    assert result["is_smear"] is False and fitted.is_smear(image) is False
    assert result["reasons"][0] == reason, result["reasons"]
    assert fitted.reasons(image) == result["reasons"]
    assert fitted.score(image) > fitted.threshold
    assert set(result["features"]) == set(sc.FEATURE_NAMES) == set(result["z"])


def test_blank_frame_reason_stands_alone(fitted):
    assert fitted.reasons(flat_grey()) == [sc.BLANK]
    assert fitted.score(flat_grey()) == float("inf")


def test_batch_and_single_image_answers_agree(fitted):
    batch = np.stack([smear_like(2000), flat_grey(), photo(5), smear_like(2001)])
    flags = fitted.is_smear(batch)
    assert flags.dtype == bool and flags.tolist() == [True, False, False, True]
    assert [fitted.is_smear(image) for image in batch] == flags.tolist()
    scores = fitted.score(batch)
    assert scores.shape == (4,) and scores[1] == np.inf
    assert ((scores <= fitted.threshold) == flags).all()
    reasons = fitted.reasons(batch)
    assert reasons[0] == [] and reasons[1] == [sc.BLANK] and sc.COLOURS in reasons[2]
    rate = fitted.false_flag_rate(batch)
    assert rate == {"n": 4, "flagged": 2, "rate": 0.5, "flagged_indices": [1, 2]}


def test_padding_of_a_non_square_upload_is_not_mistaken_for_flat_areas(fitted):
    narrow = smear_like(3000, width=160)  # prepare_image pads it to 224 x 224 with black columns
    prepared = prepare_image(narrow, SIZE)
    assert not prepared[:, :20].any()
    result = fitted.check(prepared)
    assert result["is_smear"], result["reasons"]
    assert result["features"]["flat_fraction"] < 0.2


def test_parameters_round_trip_through_json(fitted):
    params = json.loads(json.dumps(fitted.to_dict()))
    assert params["kind"] == "telediag.smear_check" and params["features"] == list(sc.FEATURE_NAMES)
    again = sc.SmearCheck.from_dict(params)
    batch = np.stack([smear_like(4000), out_of_focus(4), screenshot(4)])
    assert np.array_equal(again.score(batch), fitted.score(batch))
    assert again.reasons(batch) == fitted.reasons(batch)
    with pytest.raises(ValueError, match="other features"):
        sc.SmearCheck.from_dict({**params, "features": params["features"][:-1]})
    with pytest.raises(ValueError, match="format"):
        sc.SmearCheck.from_dict({**params, "format": 99})


def test_misuse_is_refused(fitted):
    with pytest.raises(RuntimeError, match="not fitted"):
        sc.SmearCheck().score(flat_grey())
    with pytest.raises(ValueError, match="fitted on 224x224"):
        fitted.score(np.full((64, 64, 3), 200, np.uint8))
    with pytest.raises(ValueError, match="at least 20"):
        sc.SmearCheck().fit(np.stack([smear_like(seed) for seed in range(5)]))


def test_calibrate_moves_the_threshold_to_a_quantile_of_other_images():
    check = sc.SmearCheck().fit(np.stack([smear_like(seed) for seed in range(40)]))
    others = np.stack([smear_like(seed) for seed in range(5000, 5030)])
    check.calibrate(others, quantile=0.5)
    assert check.threshold == max(float(np.quantile(check.score(others), 0.5)), sc.MIN_THRESHOLD)


# ----------------------------------------------------------------------------------------------
# Real images


@pytest.fixture(scope="module")
def real_split(real_data_root):
    from ml.dataset import scan_dataset
    from ml.splits import split_grouped

    return split_grouped(scan_dataset(real_data_root).samples, block_size=40, seed=1)


@pytest.mark.slow
def test_false_flag_rate_on_real_validation_images(real_split):
    """Fitted on every 4th real training image, the check flags few real validation images (other
    patients) and still flags every kind of non-smear."""
    from ml.dataset import load_arrays

    x_train, _ = load_arrays(real_split.train[::4], SIZE)
    x_val, _ = load_arrays(real_split.val[::2], SIZE)
    check = sc.SmearCheck().fit(x_train)
    rate = check.false_flag_rate(x_val)
    assert rate["rate"] <= 0.03, rate

    negatives = np.stack([out_of_focus(7), flat_grey(), photo(7), screenshot(7)])
    results = check.check(negatives)
    assert [r["is_smear"] for r in results] == [False] * 4
    assert [r["reasons"][0] for r in results] == [sc.OUT_OF_FOCUS, sc.BLANK, sc.COLOURS, sc.GRAPHIC]

    # A real smear uploaded as a non-square crop (padded by prepare_image) is still a smear.
    kept = [i for i in range(len(x_val)) if i not in rate["flagged_indices"]][:10]
    padded = np.stack([prepare_image(x_val[i][:, 30:190], SIZE) for i in kept])
    assert check.is_smear(padded).all(), check.reasons(padded)


@pytest.mark.slow
def test_colour_grid_scores_real_images_as_every_pixel_does(real_split):
    """The colour statistics on every other pixel estimate the all-pixel ones: on real validation
    images a fitted check's scores move by far less than its threshold's margin, and no verdict
    changes."""
    from ml.dataset import load_arrays

    x_train, _ = load_arrays(real_split.train[::4], SIZE)
    x_val, _ = load_arrays(real_split.val[::2], SIZE)
    check = sc.SmearCheck().fit(x_train)
    grid = check._scores_from_features(sc.compute_features(x_val))
    every_pixel = check._scores_from_features(np.stack([_features_the_plain_way(x, step=1) for x in x_val]))
    assert np.abs(grid - every_pixel).max() < 0.05
    assert ((grid > check.threshold) == (every_pixel > check.threshold)).all()


def _features_the_plain_way(image, step=2):
    """The FEATURES written out directly (boolean-mask copies, float64 everywhere): what
    ``image_features`` must equal, however it is made fast. ``step=1``: colour on every pixel."""
    import cv2

    from ml.robustness import content_mask

    mask = _mask_the_plain_way(np.all(image == 0, axis=-1))  # black padding rows/columns at the edges
    assert (content_mask(image) == mask).all()
    # Colour statistics on every other row and column (the whole image if that grid misses the content).
    grid, grid_mask = image[::step, ::step], mask[::step, ::step]
    if not grid_mask.any():
        grid, grid_mask = image, mask
    as_float = grid.astype(np.float32) / 255.0
    lab = cv2.cvtColor(as_float, cv2.COLOR_RGB2Lab)[grid_mask].astype(np.float64)
    hsv = cv2.cvtColor(as_float, cv2.COLOR_RGB2HSV)[grid_mask]
    optical_density = -np.log10((image[mask].astype(np.float64) + 1.0) / 256.0).mean(axis=0)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    inner = inner if inner.any() else mask
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))[inner]
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(image, kernel).astype(np.int16) - cv2.erode(image, kernel).astype(np.int16)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    hue, saturation = hsv[:, 0], hsv[:, 1]
    values = {
        "lightness_mean": lab[:, 0].mean(),
        "lightness_std": lab[:, 0].std(),
        "a_mean": lab[:, 1].mean(),
        "b_mean": lab[:, 2].mean(),
        "od_red_share": optical_density[0] / optical_density.sum(),
        "od_blue_share": optical_density[2] / optical_density.sum(),
        "background_fraction": np.mean((lab[:, 0] > 75) & (chroma < 20)),
        "saturation_p90": np.quantile(saturation, 0.9),
        "off_stain_hue_fraction": np.mean((saturation > 0.25) & (hue >= 30) & (hue < 180)),
        "sharpness": np.log10(float(cv2.Laplacian(grey, cv2.CV_32F)[inner].var()) + 1e-3),
        "edge_density": np.mean(gradient > 100),
        "flat_fraction": (spread.max(axis=-1) <= 1)[inner].mean(),
    }
    return np.array([values[name] for name in sc.FEATURE_NAMES])


def _mask_the_plain_way(flat):
    rows, cols, shape = flat.all(axis=1), flat.all(axis=0), flat.shape
    mask = np.ones(shape, bool)
    if rows.all():
        return mask
    top, bottom = int(np.argmin(rows)), int(np.argmin(rows[::-1]))
    left, right = int(np.argmin(cols)), int(np.argmin(cols[::-1]))
    mask[:top], mask[shape[0] - bottom :], mask[:, :left], mask[:, shape[1] - right :] = False, False, False, False
    return mask


def _one_column_of_content():
    """Content in one odd column between black padding: the colour grid holds none of it."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, 101] = smear_like(8)[:, 101]
    return image


@pytest.mark.parametrize(
    "make",
    [
        lambda: smear_like(3),
        lambda: prepare_image(smear_like(4, size=150, width=224), SIZE),  # padding above and below
        lambda: prepare_image(smear_like(5, size=224, width=90), SIZE),  # padding left and right
        lambda: photo(2),
        lambda: screenshot(2),
        lambda: flat_grey(),
        lambda: out_of_focus(6),
        lambda: np.zeros((SIZE, SIZE, 3), np.uint8),
        lambda: _one_column_of_content(),
    ],
    ids=["smear", "padded-rows", "padded-columns", "photo", "screenshot", "flat", "defocused", "black", "sliver"],
)
def test_features_equal_the_plain_formulas(make):
    image = make()
    assert np.allclose(sc.image_features(image), _features_the_plain_way(image), rtol=1e-12, atol=1e-12)

"""Is this a stained blood smear at all? Flag photos, screenshots, blank and out-of-focus frames.

The classifier always answers one of four subtypes, even for a holiday photo. ``SmearCheck`` sits in
front of it: it computes a dozen cheap features of the prepared image (the uint8 RGB array from
``images.prepare_image``, padding excluded), compares them with the same features of real training
smears, and says whether the image looks like one, and if not, why.

Features (``FEATURES``; each is checked on the side(s) given, the message is the reason shown):

- ``lightness_mean`` (both sides): CIELAB L mean: too dark / overexposed.
- ``lightness_std`` (both): CIELAB L spread: a washed-out frame / contrast unlike a smear.
- ``a_mean``, ``b_mean`` (both): CIELAB a and b means (stain and background tint).
- ``od_red_share``, ``od_blue_share`` (both): stain-aware colour, the share of the red and of the
  blue channel in the mean optical density OD = -log10((I + 1) / 256) (Beer-Lambert).
- ``background_fraction`` (low): share of bright, nearly neutral pixels (L > 75, chroma < 20); a
  smear field has bright background between the cells.
- ``saturation_p90`` (high): 90th percentile of HSV saturation (vivid colours).
- ``off_stain_hue_fraction`` (high): share of saturated pixels (S > 0.25) with a yellow, green or
  cyan hue (30..180 degrees), which Romanowsky stains do not make.
- ``sharpness`` (both): log10 variance of the Laplacian of the grey image: low = out of focus,
  high = unnaturally crisp (graphics, text).
- ``edge_density`` (both): share of pixels whose Sobel gradient magnitude exceeds 100.
- ``flat_fraction`` (high): share of pixels whose 3x3 neighbourhood varies by <= 1 in every
  channel: perfectly flat areas, which camera images (noise, JPEG) do not have and screenshots do.

The filter-based features (sharpness, edges, flatness) stay 2 pixels away from padding. The
CIELAB and HSV statistics (lightness, a, b, background, saturation, off-stain hue) are taken over
every other row and column: a quarter of the pixels, 12,544 at 224 px, estimates the same
population figures (scores within 0.032 of the all-pixel ones on the real validation and test
images) at a third of the check's cost; the optical density counts every pixel (a histogram).

Scoring (``fit`` on real training smears): each feature becomes a quantile-scaled robust z-score,
``z = (value - median) / scale``, where the scale on each side is the distance from the median to
the 1st (low side) or 99th (high side) percentile of the training values divided by 2.326 (the
normal quantile, so z = 2.326 at those percentiles), with a small floor per feature. This keeps
skewed and heavy-tailed features comparable. An image's score is the largest z over the features
(on their checked sides); the threshold is the ``quantile`` (default 99.5%) of the training
images' scores, so about 0.5% of real training smears are flagged. Report the false-flag rate on
held-out images (the validation split) as the honest estimate. On top of the statistics, a frame
whose lightness varies by less than ``blank_lightness_std`` (CIELAB L units) or that is almost
entirely flat is always "blank frame", and large flat areas in a soft image read "out of focus"
(a crisp one reads "screenshot or graphic").

The scores depend on the image size (sharpness and edges do), so a check is used at the size it was
fitted at (``image_size``; ``score`` refuses other sizes). Parameters are plain JSON
(``to_dict``/``from_dict``) so they can be stored with a model's metadata.
"""

from dataclasses import dataclass, field

import numpy as np

from .robustness import all_channels, as_batch, content_mask

FORMAT = 1
Z_AT_QUANTILE = 2.3263478740408408  # standard normal quantile at 0.99
SCALE_QUANTILES = (0.01, 0.99)
DEFAULT_QUANTILE = 0.995
MIN_THRESHOLD = 3.0
BLANK_LIGHTNESS_STD = 1.5
BLANK_FLAT_FRACTION = 0.95

BLANK = "blank frame"
OUT_OF_FOCUS = "out of focus"
COLOURS = "colours unlike a stained smear"
GRAPHIC = "looks like a screenshot or graphic (flat areas, crisp edges)"
TOO_DARK = "too dark for a smear photograph"
TOO_BRIGHT = "overexposed or washed out"
CONTRAST = "contrast unlike a stained smear"

# name: (checked sides, reason when too low, reason when too high, scale floor)
FEATURES = {
    "lightness_mean": ("both", TOO_DARK, TOO_BRIGHT, 1.0),
    "lightness_std": ("both", TOO_BRIGHT, CONTRAST, 0.5),
    "a_mean": ("both", COLOURS, COLOURS, 0.5),
    "b_mean": ("both", COLOURS, COLOURS, 0.5),
    "od_red_share": ("both", COLOURS, COLOURS, 0.005),
    "od_blue_share": ("both", COLOURS, COLOURS, 0.005),
    "background_fraction": ("low", COLOURS, None, 0.02),
    "saturation_p90": ("high", None, COLOURS, 0.02),
    "off_stain_hue_fraction": ("high", None, COLOURS, 0.005),
    "sharpness": ("both", OUT_OF_FOCUS, GRAPHIC, 0.05),
    "edge_density": ("both", OUT_OF_FOCUS, GRAPHIC, 0.01),
    "flat_fraction": ("high", None, GRAPHIC, 0.005),
}
FEATURE_NAMES = tuple(FEATURES)

_EDGE_MAGNITUDE = 100.0
_BACKGROUND_L, _BACKGROUND_CHROMA = 75.0, 20.0
_SATURATED, _OFF_HUE = 0.25, (30.0, 180.0)
_COLOUR_STEP = 2  # colour statistics on every other row and column (module docstring)


# -log10((I + 1) / 256) for every 8-bit value: the optical density of a pixel is a table look-up.
_OPTICAL_DENSITY = -np.log10((np.arange(256, dtype=np.float64) + 1.0) / 256.0)


def _content(values, mask, whole):
    """The content pixels of an (H, W[, C]) array as (N[, C]): a view, not a copy, when nothing is padding."""
    return values.reshape(-1, *values.shape[2:]) if whole else values[mask]


def image_features(image):
    """The FEATURES of one uint8 RGB image (H, W, 3), as a float64 array in FEATURE_NAMES order.

    Runs in the worker for every uploaded image (about 1 ms at 224 px on this CPU): colour
    statistics on a grid of every other pixel (module docstring), no copies of the pixels when there
    is no padding, optical density from per-channel histograms, and exact shortcuts for the
    thresholded magnitudes (below).
    """
    import cv2

    image = np.ascontiguousarray(image, dtype=np.uint8)
    mask = content_mask(image)
    whole = bool(mask.all())
    grid, grid_mask = _colour_grid(image, mask)
    as_float = grid.astype(np.float32) / 255.0
    lab = _content(cv2.cvtColor(as_float, cv2.COLOR_RGB2Lab), grid_mask, whole)
    lightness, a, b = lab[:, 0].astype(np.float64), lab[:, 1], lab[:, 2]
    hsv = _content(cv2.cvtColor(as_float, cv2.COLOR_RGB2HSV), grid_mask, whole)
    hue, saturation = hsv[:, 0], hsv[:, 1]
    count = len(lightness)
    histogram_mask = None if whole else mask.astype(np.uint8)
    counts = np.stack([cv2.calcHist([image], [c], histogram_mask, [256], [0, 256]).ravel() for c in range(3)])
    optical_density = counts.astype(np.float64) @ _OPTICAL_DENSITY / max(counts[0].sum(), 1)
    od_total = optical_density.sum()
    od_shares = optical_density / od_total if od_total > 1e-9 else np.full(3, 1 / 3)

    # Filters see across the edge of padding (a sharp step to black): keep 2 pixels away from it.
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    inner = inner if inner.any() else mask
    inner_whole = bool(inner.all())
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    laplacian = _content(cv2.Laplacian(grey, cv2.CV_32F), inner, inner_whole)
    # The Sobel of integer grey levels is integral and exact in float32: |g| > 100 iff |g|^2 > 100^2.
    dx, dy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    edges = _content(dx * dx + dy * dy > _EDGE_MAGNITUDE**2, inner, inner_whole)
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.subtract(cv2.dilate(image, kernel), cv2.erode(image, kernel))  # max - min >= 0: no clipping
    flat = _content(all_channels(spread <= 1), inner, inner_whole)

    values = {
        "lightness_mean": lightness.mean(),
        "lightness_std": lightness.std(),
        "a_mean": a.mean(dtype=np.float64),
        "b_mean": b.mean(dtype=np.float64),
        "od_red_share": od_shares[0],
        "od_blue_share": od_shares[2],
        "background_fraction": _background_count(lightness, a, b) / count,
        "saturation_p90": float(np.quantile(saturation, 0.9)),
        "off_stain_hue_fraction": np.count_nonzero(
            (saturation > _SATURATED) & (hue >= _OFF_HUE[0]) & (hue < _OFF_HUE[1])
        )
        / count,
        "sharpness": np.log10(float(laplacian.var()) + 1e-3),
        "edge_density": np.count_nonzero(edges) / len(edges),
        "flat_fraction": np.count_nonzero(flat) / len(flat),
    }
    return np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)


def _colour_grid(image, mask):
    """(pixels, mask) of every other row and column, where the colour statistics are taken; the
    whole image when the grid holds no content pixel (a sliver of content between padding)."""
    grid_mask = mask[::_COLOUR_STEP, ::_COLOUR_STEP]
    if not grid_mask.any():
        return image, mask
    return image[::_COLOUR_STEP, ::_COLOUR_STEP], grid_mask


# Squared chroma in float32 is within 1e-4 of the exact value near the threshold (400): pixels
# further than this from it are decided there, the few nearer by the float64 hypot, as before.
_CHROMA_MARGIN = 0.01


def _background_count(lightness, a, b):
    """Pixels with L > 75 and chroma hypot(a, b) < 20 (float64), counted without a float64 hypot
    of every bright pixel."""
    squared = a * a + b * b
    bright = lightness > _BACKGROUND_L
    threshold = np.float32(_BACKGROUND_CHROMA**2)
    inside = np.count_nonzero(bright & (squared < threshold - _CHROMA_MARGIN))
    near = bright & (np.abs(squared - threshold) <= _CHROMA_MARGIN)
    if near.any():
        inside += np.count_nonzero(
            np.hypot(a[near].astype(np.float64), b[near].astype(np.float64)) < _BACKGROUND_CHROMA
        )
    return inside


def compute_features(x):
    """(N, len(FEATURE_NAMES)) features of an image or a batch."""
    batch, _ = as_batch(x)
    return np.array([image_features(image) for image in batch], dtype=np.float64).reshape(len(batch), -1)


@dataclass
class SmearCheck:
    """Fit on real smears, then ``is_smear``/``score``/``reasons``/``check`` on any prepared image(s)."""

    quantile: float = DEFAULT_QUANTILE
    min_threshold: float = MIN_THRESHOLD
    blank_lightness_std: float = BLANK_LIGHTNESS_STD
    image_size: int = None
    median: np.ndarray = None
    scale_low: np.ndarray = None
    scale_high: np.ndarray = None
    threshold: float = None
    n_fit: int = 0
    fit_scores: dict = field(default_factory=dict)

    # ---------------------------------------------------------------------------------------------
    # Fitting

    def fit(self, x_train):
        """Learn medians and scales from real training smears and set the threshold at ``quantile``
        of their scores (never below ``min_threshold``). Returns self."""
        batch, _ = as_batch(x_train)
        if len(batch) < 20:
            raise ValueError(f"need at least 20 real smear images to fit, got {len(batch)}")
        if batch.shape[1] != batch.shape[2]:
            raise ValueError(f"expected square prepared images, got {batch.shape[1]}x{batch.shape[2]}")
        features = compute_features(batch)
        self.image_size = int(batch.shape[1])
        self.median = np.median(features, axis=0)
        low, high = np.quantile(features, SCALE_QUANTILES, axis=0)
        floors = np.array([FEATURES[name][3] for name in FEATURE_NAMES])
        self.scale_low = np.maximum((self.median - low) / Z_AT_QUANTILE, floors)
        self.scale_high = np.maximum((high - self.median) / Z_AT_QUANTILE, floors)
        self.n_fit = len(batch)
        scores = self._scores_from_features(features)
        self.threshold = max(float(np.quantile(scores, self.quantile)), self.min_threshold)
        self.fit_scores = _describe_scores(scores)
        return self

    def calibrate(self, x, quantile=None):
        """Reset the threshold to ``quantile`` of the scores of other real smears (e.g. validation
        images). Rates measured on those images afterwards are no longer held-out estimates."""
        quantile = self.quantile if quantile is None else quantile
        scores = self.score(x)
        self.quantile = float(quantile)
        self.threshold = max(float(np.quantile(scores, quantile)), self.min_threshold)
        return self

    # ---------------------------------------------------------------------------------------------
    # Scoring

    def _require_fitted(self):
        if self.median is None or self.threshold is None:
            raise RuntimeError("SmearCheck is not fitted: call fit(x_train) or from_dict(params)")

    def _check_size(self, batch):
        if batch.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f"this smear check was fitted on {self.image_size}x{self.image_size} images; "
                f"prepare images at that size (got {batch.shape[1]}x{batch.shape[2]})"
            )

    def _z(self, features):
        """Signed z per feature, with sides that are not checked set to 0."""
        deviation = features - self.median
        z = np.where(deviation >= 0, deviation / self.scale_high, deviation / self.scale_low)
        for k, name in enumerate(FEATURE_NAMES):
            sides = FEATURES[name][0]
            if sides == "high":
                z[:, k] = np.maximum(z[:, k], 0.0)
            elif sides == "low":
                z[:, k] = np.minimum(z[:, k], 0.0)
        return z

    def _scores_from_features(self, features):
        return np.abs(self._z(features)).max(axis=1)

    def _blank(self, features):
        std = features[:, FEATURE_NAMES.index("lightness_std")]
        flat = features[:, FEATURE_NAMES.index("flat_fraction")]
        return (std < self.blank_lightness_std) | (flat > BLANK_FLAT_FRACTION)

    def _prepare(self, x):
        self._require_fitted()
        batch, single = as_batch(x)
        self._check_size(batch)
        return compute_features(batch), single

    def score(self, x):
        """Largest feature z-score of each image (float, or an (N,) array for a batch); an image is
        flagged when its score exceeds ``threshold`` or it is blank (blank frames score inf)."""
        features, single = self._prepare(x)
        scores = self._scores_from_features(features)
        scores[self._blank(features)] = np.inf
        return float(scores[0]) if single else scores

    def is_smear(self, x):
        """True where the image looks like a stained smear (bool, or an (N,) bool array)."""
        result = self.check(x)
        if isinstance(result, dict):
            return result["is_smear"]
        return np.array([r["is_smear"] for r in result], dtype=bool)

    def reasons(self, x):
        """Human-readable reasons an image is not taken for a smear ([] when it is): a list of
        strings for one image, a list of such lists for a batch."""
        result = self.check(x)
        if isinstance(result, dict):
            return result["reasons"]
        return [r["reasons"] for r in result]

    @staticmethod
    def _reason(name, z_row):
        """The message for feature ``name`` being out of range in an image with z-scores ``z_row``."""
        k = FEATURE_NAMES.index(name)
        reason = FEATURES[name][1] if z_row[k] < 0 else FEATURES[name][2]
        if name == "flat_fraction" and z_row[FEATURE_NAMES.index("sharpness")] < 0:
            # Smooth *and* soft: a defocused frame (or one blurred afterwards), not crisp graphics.
            reason = OUT_OF_FOCUS
        return reason

    def check(self, x):
        """One dict per image: is_smear, score, threshold, reasons, features {name: value},
        z {name: signed z-score} (a dict for one image, a list for a batch)."""
        features, single = self._prepare(x)
        z = self._z(features)
        scores = np.abs(z).max(axis=1)
        blank = self._blank(features)
        results = []
        for i in range(len(features)):
            if blank[i]:
                reasons = [BLANK]
            else:
                flagged = [
                    (abs(z[i, k]), self._reason(name, z[i]))
                    for k, name in enumerate(FEATURE_NAMES)
                    if abs(z[i, k]) > self.threshold
                ]
                reasons = []
                for _, reason in sorted(flagged, key=lambda item: -item[0]):
                    if reason and reason not in reasons:
                        reasons.append(reason)
            results.append(
                {
                    "is_smear": not reasons,
                    "score": float("inf") if blank[i] else float(scores[i]),
                    "threshold": self.threshold,
                    "reasons": reasons,
                    "features": {name: float(features[i, k]) for k, name in enumerate(FEATURE_NAMES)},
                    "z": {name: float(z[i, k]) for k, name in enumerate(FEATURE_NAMES)},
                }
            )
        return results[0] if single else results

    def false_flag_rate(self, x):
        """Share of ``x`` (real smears) that the check flags, with the flagged indices."""
        flags = ~self.is_smear(as_batch(x)[0])
        return {
            "n": len(flags),
            "flagged": int(flags.sum()),
            "rate": float(flags.mean()) if len(flags) else 0.0,
            "flagged_indices": [int(i) for i in np.flatnonzero(flags)],
        }

    # ---------------------------------------------------------------------------------------------
    # Serialisation

    def to_dict(self):
        self._require_fitted()
        return {
            "format": FORMAT,
            "kind": "telediag.smear_check",
            "image_size": self.image_size,
            "features": list(FEATURE_NAMES),
            "sides": [FEATURES[name][0] for name in FEATURE_NAMES],
            "median": [float(v) for v in self.median],
            "scale_low": [float(v) for v in self.scale_low],
            "scale_high": [float(v) for v in self.scale_high],
            "threshold": float(self.threshold),
            "quantile": float(self.quantile),
            "min_threshold": float(self.min_threshold),
            "blank_lightness_std": float(self.blank_lightness_std),
            "blank_flat_fraction": BLANK_FLAT_FRACTION,
            "n_fit": int(self.n_fit),
            "fit_scores": self.fit_scores,
        }

    @classmethod
    def from_dict(cls, data):
        if data.get("format") != FORMAT or data.get("kind", "telediag.smear_check") != "telediag.smear_check":
            raise ValueError(f"unsupported smear-check parameters (format {data.get('format')!r})")
        if list(data.get("features", [])) != list(FEATURE_NAMES):
            raise ValueError("smear-check parameters were made for other features; refit the check")
        return cls(
            quantile=float(data["quantile"]),
            min_threshold=float(data.get("min_threshold", MIN_THRESHOLD)),
            blank_lightness_std=float(data.get("blank_lightness_std", BLANK_LIGHTNESS_STD)),
            image_size=int(data["image_size"]),
            median=np.asarray(data["median"], dtype=np.float64),
            scale_low=np.asarray(data["scale_low"], dtype=np.float64),
            scale_high=np.asarray(data["scale_high"], dtype=np.float64),
            threshold=float(data["threshold"]),
            n_fit=int(data.get("n_fit", 0)),
            fit_scores=dict(data.get("fit_scores") or {}),
        )


def _describe_scores(scores):
    quantiles = (0.5, 0.9, 0.99, 0.995, 1.0)
    return {f"q{q * 100:g}": float(np.quantile(scores, q)) for q in quantiles}

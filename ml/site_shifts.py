"""Site shifts: how another lab's stain, lamp, camera or compression changes an image, family by family.

The transforms here are written from scratch in numpy/OpenCV and share nothing with the training
augmentation (ml.augmentation / ml.layers are Keras random layers); a model that learned those
layers' operations is not thereby credited with generalising to another site. Each transform is
deterministic and maps uint8 RGB (H, W, 3) to uint8 RGB. They are applied at the images' source
resolution (224 px for the development data), before serving's resize to the model's input size,
as a site's camera would produce them.

Families and severity levels (amplitudes chosen within what differs between labs/microscopes):

===============  ==========================================================================================
``stain``        Stain amount in optical density: RGB -> OD (-log10 of transmission, I0 = 255) -> HED by
                 the inverse of Ruifrok & Johnston's stain matrix (the one skimage's rgb2hed uses, written
                 out below), haematoxylin and eosin concentrations scaled, back to RGB. Levels: H x0.8 /
                 E x1.2; H x1.2 / E x0.8; both x0.75 (a pale batch); both x1.25 (a heavy batch).
``white_balance`` Per-channel gains (lamp colour temperature, camera white balance): warm (R x1.08,
                 B x0.90), cool (R x0.92, B x1.10), green cast (G x1.06).
``gamma``        Gamma and exposure: gamma 0.8 and 1.25 on 0..1 values; exposure x0.85 and x1.15.
``saturation``   Three implementations: OpenCV 8-bit HSV saturation x0.65 and x1.35; blend towards the
                 BT.709 luminance (35% grey); CIELAB chroma x1.3.
``hue``          Rotation of the (a, b) plane of CIELAB by +-12 degrees (not the HSV hue of the layers).
``jpeg``         Re-encoding with OpenCV's libjpeg at quality 60 and 30.
``defocus``      Convolution with a uniform disc (pillbox) of radius 1.5 and 3 px: a focus error.
``scale``        Another objective/camera resolution: down-sampled to 60% and 40% (area averaging),
                 back up with bicubic interpolation (same field, fewer pixels).
``combined``     Two or three at once: another lab (stain + white balance + JPEG), another camera
                 (scale + defocus + JPEG), another lamp and stain (stain + gamma + white balance).
===============  ==========================================================================================

Leave-one-family-out crediting (``trained_families``): a model is credited with a family only when
none of the family's operations were in its training augmentation (a combination only when none of
its parts were), read from the model's training configuration.
"""

import math

import numpy as np

FAMILIES = ("stain", "white_balance", "gamma", "saturation", "hue", "jpeg", "defocus", "scale", "combined")

# The site augmentations a recipe can train with (ml.site_augmentation, ``--site-augment``) and the
# families each one takes away from a model's credit. Per-channel gains also change exposure (gamma).
SITE_AUGMENTATION_FAMILIES = {
    "white_balance": ("white_balance", "gamma"),
    "chroma": ("saturation", "hue"),
    "defocus": ("defocus",),
    "scale": ("scale",),
    "noise": (),
    "jpeg": ("jpeg",),
}

# Ruifrok & Johnston's H, E, DAB optical-density vectors (rows), as in skimage.color.rgb_from_hed;
# the HED->RGB direction is this matrix, RGB->HED its inverse.
RGB_FROM_HED = np.array(
    [
        [0.65, 0.70, 0.29],
        [0.07, 0.99, 0.11],
        [0.27, 0.57, 0.78],
    ],
    dtype=np.float64,
)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
_OD_FLOOR = 1e-6
LUMINANCE_709 = np.array([0.2126, 0.7152, 0.0722])


def _f(image):
    return np.asarray(image, dtype=np.float64) / 255.0


def _u8(values):
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


# --- Families ---------------------------------------------------------------------------------------


def stain_scale(image, h=1.0, e=1.0):
    """Scale the haematoxylin and eosin concentrations in optical density (Beer-Lambert)."""
    rgb = np.maximum(_f(image), _OD_FLOOR)
    od = -np.log10(rgb)  # (H, W, 3)
    hed = od @ HED_FROM_RGB
    hed[..., 0] *= h
    hed[..., 1] *= e
    return _u8(np.power(10.0, -(hed @ RGB_FROM_HED)))


def white_balance(image, gains):
    return _u8(_f(image) * np.asarray(gains, dtype=np.float64))


def gamma(image, value):
    return _u8(np.power(_f(image), value))


def exposure(image, factor):
    return _u8(_f(image) * factor)


def hsv_saturation(image, factor):
    """OpenCV 8-bit HSV (S in 0..255) saturation scaling."""
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2HSV)
    s = np.clip(np.rint(hsv[..., 1].astype(np.float64) * factor), 0, 255)
    hsv[..., 1] = s.astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def luminance_blend(image, grey_fraction):
    """Blend each pixel towards its BT.709 luminance (a desaturated camera profile)."""
    rgb = _f(image)
    luma = (rgb @ LUMINANCE_709)[..., None]
    return _u8((1.0 - grey_fraction) * rgb + grey_fraction * luma)


def _lab(image):
    import cv2

    return cv2.cvtColor(np.asarray(image, dtype=np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _from_lab(lab):
    import cv2

    return _u8(cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB).astype(np.float64))


def lab_chroma(image, factor):
    lab = _lab(image)
    lab[..., 1:] *= factor
    return _from_lab(lab)


def lab_hue(image, degrees):
    """Rotate the chroma plane (a, b) of CIELAB; lightness and chroma are kept."""
    lab = _lab(image)
    t = math.radians(degrees)
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1] = a * math.cos(t) - b * math.sin(t)
    lab[..., 2] = a * math.sin(t) + b * math.cos(t)
    return _from_lab(lab)


def jpeg(image, quality):
    import cv2

    bgr = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def disc_kernel(radius):
    """A normalised pillbox of ``radius`` px (sub-pixel edges by 4x supersampling)."""
    size = int(math.ceil(radius)) * 2 + 1
    fine = 4
    coords = (np.arange(size * fine) + 0.5) / fine - size / 2.0
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    inside = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    kernel = inside.reshape(size, fine, size, fine).mean(axis=(1, 3))
    return kernel / kernel.sum()


def defocus(image, radius):
    import cv2

    kernel = disc_kernel(radius).astype(np.float32)
    out = cv2.filter2D(np.asarray(image, dtype=np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def rescale(image, factor):
    """Down-sample to ``factor`` of the size (area averaging) and back up (bicubic)."""
    import cv2

    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _chain(*steps):
    def apply(image):
        for step in steps:
            image = step(image)
        return image

    return apply


# name -> (family, parts (families it combines), description, function)
VARIANTS = {
    "stain_h0.8_e1.2": ("stain", ("stain",), "HED: H x0.8, E x1.2", lambda x: stain_scale(x, 0.8, 1.2)),
    "stain_h1.2_e0.8": ("stain", ("stain",), "HED: H x1.2, E x0.8", lambda x: stain_scale(x, 1.2, 0.8)),
    "stain_pale": ("stain", ("stain",), "HED: H and E x0.75", lambda x: stain_scale(x, 0.75, 0.75)),
    "stain_heavy": ("stain", ("stain",), "HED: H and E x1.25", lambda x: stain_scale(x, 1.25, 1.25)),
    "wb_warm": (
        "white_balance",
        ("white_balance",),
        "gains R 1.08 G 1 B 0.90",
        lambda x: white_balance(x, (1.08, 1.0, 0.90)),
    ),
    "wb_cool": (
        "white_balance",
        ("white_balance",),
        "gains R 0.92 G 1 B 1.10",
        lambda x: white_balance(x, (0.92, 1.0, 1.10)),
    ),
    "wb_green": (
        "white_balance",
        ("white_balance",),
        "gains R 1 G 1.06 B 1",
        lambda x: white_balance(x, (1.0, 1.06, 1.0)),
    ),
    "gamma_0.8": ("gamma", ("gamma",), "gamma 0.8", lambda x: gamma(x, 0.8)),
    "gamma_1.25": ("gamma", ("gamma",), "gamma 1.25", lambda x: gamma(x, 1.25)),
    "exposure_0.85": ("gamma", ("gamma",), "exposure x0.85", lambda x: exposure(x, 0.85)),
    "exposure_1.15": ("gamma", ("gamma",), "exposure x1.15", lambda x: exposure(x, 1.15)),
    "sat_hsv_0.65": ("saturation", ("saturation",), "8-bit HSV S x0.65", lambda x: hsv_saturation(x, 0.65)),
    "sat_hsv_1.35": ("saturation", ("saturation",), "8-bit HSV S x1.35", lambda x: hsv_saturation(x, 1.35)),
    "sat_luma_blend": ("saturation", ("saturation",), "35% towards luminance", lambda x: luminance_blend(x, 0.35)),
    "sat_lab_chroma_1.3": ("saturation", ("saturation",), "CIELAB chroma x1.3", lambda x: lab_chroma(x, 1.3)),
    "hue_lab_+12": ("hue", ("hue",), "CIELAB hue +12 deg", lambda x: lab_hue(x, 12.0)),
    "hue_lab_-12": ("hue", ("hue",), "CIELAB hue -12 deg", lambda x: lab_hue(x, -12.0)),
    "jpeg_q60": ("jpeg", ("jpeg",), "JPEG quality 60", lambda x: jpeg(x, 60)),
    "jpeg_q30": ("jpeg", ("jpeg",), "JPEG quality 30", lambda x: jpeg(x, 30)),
    "defocus_r1.5": ("defocus", ("defocus",), "disc blur r 1.5 px", lambda x: defocus(x, 1.5)),
    "defocus_r3": ("defocus", ("defocus",), "disc blur r 3 px", lambda x: defocus(x, 3.0)),
    "scale_0.6": ("scale", ("scale",), "60% resolution, back up", lambda x: rescale(x, 0.6)),
    "scale_0.4": ("scale", ("scale",), "40% resolution, back up", lambda x: rescale(x, 0.4)),
    "combo_other_lab": (
        "combined",
        ("stain", "white_balance", "jpeg"),
        "H x1.15 E x0.9 + warm WB + JPEG 50",
        _chain(
            lambda x: stain_scale(x, 1.15, 0.9), lambda x: white_balance(x, (1.06, 1.0, 0.92)), lambda x: jpeg(x, 50)
        ),
    ),
    "combo_other_camera": (
        "combined",
        ("scale", "defocus", "jpeg"),
        "60% resolution + blur r 1.5 + JPEG 50",
        _chain(lambda x: rescale(x, 0.6), lambda x: defocus(x, 1.5), lambda x: jpeg(x, 50)),
    ),
    "combo_lamp_stain": (
        "combined",
        ("stain", "gamma", "white_balance"),
        "pale stain x0.85 + gamma 1.15 + cool WB",
        _chain(
            lambda x: stain_scale(x, 0.85, 0.85),
            lambda x: gamma(x, 1.15),
            lambda x: white_balance(x, (0.94, 1.0, 1.08)),
        ),
    ),
}
VARIANT_NAMES = tuple(VARIANTS)


def family_of(name):
    return VARIANTS[name][0]


def apply(name, images):
    """The variant ``name`` of one image (H, W, 3) or a batch (N, H, W, 3), uint8 RGB."""
    function = VARIANTS[name][3]
    images = np.asarray(images)
    if images.ndim == 3:
        return function(images)
    return np.stack([function(image) for image in images]) if len(images) else images.copy()


# --- Leave-one-family-out crediting -------------------------------------------------------------------


def trained_families(train_config):
    """The shift families whose operations a model met in training, from its train_config
    (metadata.json / ModelRecord / TrainingRun.options keys):

    - ``augment_color`` (Keras RandomBrightness/Contrast/Saturation/Hue): gamma, saturation, hue;
    - ``augment_grayscale`` > 0 (RandomGrayscale): saturation;
    - ``augment_stain`` > 0 (RandomStainJitter in optical density): stain;
    - ``augment_site`` (ml.site_augmentation layers): the families SITE_AUGMENTATION_FAMILIES names.

    Geometric augmentation (flip, rotation, shear, zoom) is none of these families. Per-image colour
    standardisation is part of the model (identical in training and serving), not augmentation.
    """
    config = dict(train_config or {})
    if not config.get("augment", True) or not float(config.get("augment_strength", 1.0) or 0):
        return set()
    trained = set()
    if config.get("augment_color"):
        trained |= {"gamma", "saturation", "hue"}
    if float(config.get("augment_grayscale") or 0) > 0:
        trained.add("saturation")
    if float(config.get("augment_stain") or 0) > 0:
        trained.add("stain")
    for name in config.get("augment_site") or ():
        trained |= set(SITE_AUGMENTATION_FAMILIES[name])
    return trained


def is_credited(name, trained):
    """A variant counts for the model only when none of the families it uses were trained on."""
    return not (set(VARIANTS[name][1]) & set(trained))


# --- Summaries ------------------------------------------------------------------------------------------


def flagged(probabilities, ood_scores, *, confidence_threshold, ood_threshold):
    """Boolean (N,): low confidence (top probability below the threshold) or OOD score above its
    threshold (no OOD score: only confidence). The same rule as serving (training.gates)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    low = probabilities.max(axis=1) < confidence_threshold
    if ood_scores is None or ood_threshold is None:
        return low
    return low | (np.asarray(ood_scores, dtype=np.float64) > ood_threshold)


def _family_figures(rows, plain_accuracy):
    """Mean and worst accuracy of some variants of a family and their drops (points); None without any."""
    if not rows:
        return None
    accuracy = float(np.mean([v["accuracy"] for v in rows]))
    return {
        "accuracy": accuracy,
        "worst_accuracy": float(min(v["accuracy"] for v in rows)),
        "drop_points": round(100 * (plain_accuracy - accuracy), 2),
        "worst_drop_points": round(max(v["drop_points"] for v in rows), 2),
    }


def summarise(results, y, train_config, *, confidence_threshold, ood_threshold=None):
    """The leave-one-family-out table of one model.

    ``results``: {"original" and variant names: (probabilities (N, K), ood scores (N,) or None)}.
    Returns a JSON-able dict: plain accuracy and flag rate; per variant accuracy, drop (points),
    credited, wrong answers and how many of them were flagged; per family the mean accuracy and drop
    over its variants, and over its credited variants alone (``credited_figures``: a combination of
    a trained and an untrained family is not credited, its family's other combinations may be); the
    worst credited family and the mean drop over credited families, from the credited variants only;
    and over all credited variants the share of wrong answers that were flagged.
    """
    y = np.asarray(y)
    trained = trained_families(train_config)
    base_p, base_ood = results["original"]
    base_flags = flagged(base_p, base_ood, confidence_threshold=confidence_threshold, ood_threshold=ood_threshold)
    plain_accuracy = float(np.mean(np.asarray(base_p).argmax(axis=1) == y))
    variants, wrong_total, wrong_flagged = {}, 0, 0
    for name in VARIANT_NAMES:
        if name not in results:
            continue
        p, ood = results[name]
        correct = np.asarray(p).argmax(axis=1) == y
        flags = flagged(p, ood, confidence_threshold=confidence_threshold, ood_threshold=ood_threshold)
        credited = is_credited(name, trained)
        wrong = int((~correct).sum())
        caught = int((~correct & flags).sum())
        if credited:
            wrong_total += wrong
            wrong_flagged += caught
        accuracy = float(correct.mean())
        variants[name] = {
            "family": family_of(name),
            "description": VARIANTS[name][2],
            "credited": credited,
            "accuracy": accuracy,
            "drop_points": round(100 * (plain_accuracy - accuracy), 2),
            "wrong": wrong,
            "wrong_flagged": caught,
            "flagged_rate": float(flags.mean()),
        }
    families = {}
    for family in FAMILIES:
        rows = [v for v in variants.values() if v["family"] == family]
        if not rows:
            continue
        families[family] = {
            "variants": len(rows),
            "credited": any(v["credited"] for v in rows),
            "credited_variants": sum(v["credited"] for v in rows),
            **_family_figures(rows, plain_accuracy),
            # What the family's credit rests on: a combination is credited variant by variant.
            "credited_figures": _family_figures([v for v in rows if v["credited"]], plain_accuracy),
        }
    credited = {f: s["credited_figures"] for f, s in families.items() if s["credited"]}
    worst = max(credited, key=lambda f: credited[f]["worst_drop_points"]) if credited else None
    return {
        "n": int(len(y)),
        "trained_families": sorted(trained),
        "confidence_threshold": confidence_threshold,
        "ood_threshold": ood_threshold,
        "plain": {"accuracy": plain_accuracy, "flagged_rate": float(base_flags.mean())},
        "variants": variants,
        "families": families,
        "worst_family": (
            {"family": worst, "worst_drop_points": credited[worst]["worst_drop_points"]} if worst else None
        ),
        "mean_credited_accuracy": float(np.mean([s["accuracy"] for s in credited.values()])) if credited else None,
        "mean_credited_drop_points": (
            round(float(np.mean([s["drop_points"] for s in credited.values()])), 2) if credited else None
        ),
        "wrong_under_credited_shifts": wrong_total,
        "wrong_flagged": wrong_flagged,
        "wrong_flagged_rate": (wrong_flagged / wrong_total) if wrong_total else None,
    }


def format_table(summary):
    """Plain-text leave-one-family-out table (families, then the flag rates)."""
    plain = summary["plain"]
    lines = [
        f"Site shifts (independent of the training augmentation; trained families not credited: "
        f"{', '.join(summary['trained_families']) or 'none'}), {summary['n']} test images",
        f"  plain accuracy {plain['accuracy']:.2%}; plain images flagged {plain['flagged_rate']:.1%}",
        f"  {'family':<14} {'credited':>8} {'mean acc':>9} {'drop':>6} {'worst drop':>10}"
        "   credited variants only: mean acc / drop / worst drop",
    ]
    for family, row in summary["families"].items():
        credited = row["credited_variants"]
        label = "no" if not credited else "yes" if credited == row["variants"] else f"{credited}/{row['variants']}"
        line = (
            f"  {family:<14} {label:>8} {row['accuracy']:>9.2%} "
            f"{row['drop_points']:>+6.1f} {row['worst_drop_points']:>+10.1f}"
        )
        figures = row["credited_figures"]
        if figures and credited < row["variants"]:
            line += (
                f"   {figures['accuracy']:.2%} / {figures['drop_points']:+.1f} / {figures['worst_drop_points']:+.1f}"
            )
        lines.append(line)
    worst = summary["worst_family"]
    if worst:
        lines.append(f"  worst credited family: {worst['family']} ({worst['worst_drop_points']:+.1f} points)")
    if summary["mean_credited_accuracy"] is not None:
        lines.append(
            f"  mean over credited families: {summary['mean_credited_accuracy']:.2%} "
            f"({summary['mean_credited_drop_points']:+.1f} points)"
        )
    rate = summary["wrong_flagged_rate"]
    lines.append(
        f"  wrong answers under credited shifts flagged (OOD or low confidence): "
        f"{summary['wrong_flagged']}/{summary['wrong_under_credited_shifts']}"
        + (f" = {rate:.1%}" if rate is not None else "")
    )
    return "\n".join(lines)

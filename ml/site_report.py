"""A model's site-shift report and its OOD detector, from a model and its recorded split.

``build(model, train_config, split_arrays, input_size, confidence_threshold)``:

1. penultimate features and probabilities of the TRAINING images fit the Mahalanobis OOD model
   (ml.ood);
2. its threshold is calibrated on the VALIDATION split (plain images): the smallest threshold such
   that at most ``target_flag_rate`` of validation images are flagged by OOD score or low
   confidence together (the rule serving applies);
3. the TEST images, as they are and under every site shift (ml.site_shifts, applied at the source
   resolution, then prepared at the model's input size), give the leave-one-family-out table and
   the share of wrong answers flagged.

Features of every part are cached as .npz under ``cache_dir`` (keyed by the model's sha256 and the
part's name), so a rerun (a different threshold, a report) costs no forward pass.
"""

from pathlib import Path

import numpy as np

from . import ood, site_shifts
from .images import prepare_image

DEFAULT_TARGET_FLAG_RATE = 0.04  # validation flagged in all: keeps held-out plain images under 5%


def _prepared(images, size):
    if images.shape[1] == size:
        return images
    return np.stack([prepare_image(image, size) for image in images])


def _cached(cache_dir, key, compute):
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        data = np.load(path)
        return data["features"], data["probabilities"]
    features, probabilities = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, features=features, probabilities=probabilities)
    tmp.replace(path)
    return features, probabilities


def calibrate_threshold(scores, probabilities, confidence_threshold, target_flag_rate):
    """Smallest OOD threshold with (OOD or low confidence) flagging at most ``target_flag_rate``."""
    scores = np.asarray(scores, dtype=np.float64)
    low = np.asarray(probabilities).max(axis=1) < confidence_threshold
    budget = int(np.floor(target_flag_rate * len(scores))) - int(low.sum())
    candidates = np.sort(scores[~low])[::-1]  # OOD flags only count where confidence did not flag
    if budget <= 0 or not len(candidates):
        return float(candidates[0]) if len(candidates) else float(np.max(scores))
    if budget >= len(candidates):
        return float(candidates[-1])
    return float(candidates[budget])  # flags the `budget` highest (strictly above this value)


def build(
    model,
    train_config,
    parts,
    *,
    input_size,
    confidence_threshold,
    cache_dir=None,
    cache_key="model",
    target_flag_rate=DEFAULT_TARGET_FLAG_RATE,
    n_components=ood.DEFAULT_COMPONENTS,
    variants=None,
    batch_size=64,
    log=None,
):
    """``parts``: {"train": (x, y), "val": (x, y), "test": (x_source, y)}; x uint8 (x_source at the
    source resolution). Returns (ood params dict with threshold, site summary dict)."""
    log = log or (lambda line: None)
    extractor = ood.feature_model(model)

    def features_of(name, images):
        def compute():
            log(f"  forward pass: {name} ({len(images)} images)")
            return ood.predict_features(extractor, _prepared(images, input_size), batch_size=batch_size)

        return _cached(cache_dir, f"{cache_key}-{name}", compute)

    x_train, y_train = parts["train"]
    f_train, _ = features_of("train", x_train)
    detector = ood.MahalanobisOOD.fit(f_train, y_train, n_components=n_components)
    detector = ood.MahalanobisOOD.from_dict(detector.to_dict())  # score exactly as stored (float32)

    x_val, _ = parts["val"]
    f_val, p_val = features_of("val", x_val)
    val_scores = detector.score(f_val)
    detector.threshold = calibrate_threshold(val_scores, p_val, confidence_threshold, target_flag_rate)
    val_flags = site_shifts.flagged(
        p_val, val_scores, confidence_threshold=confidence_threshold, ood_threshold=detector.threshold
    )
    detector.info.update(
        calibrated_on={
            "split": "val",
            "n": int(len(x_val)),
            "target_flag_rate": target_flag_rate,
            "confidence_threshold": confidence_threshold,
            "flagged_rate": float(val_flags.mean()),
            "ood_flagged_rate": float(np.mean(val_scores > detector.threshold)),
        }
    )

    x_test, y_test = parts["test"]
    results = {}
    f, p = features_of("test-original", x_test)
    results["original"] = (p, detector.score(f))
    for name in variants or site_shifts.VARIANT_NAMES:
        f, p = features_of(f"test-{name}", site_shifts.apply(name, x_test))
        results[name] = (p, detector.score(f))
    summary = site_shifts.summarise(
        results,
        y_test,
        train_config,
        confidence_threshold=confidence_threshold,
        ood_threshold=detector.threshold,
    )
    # Without the OOD score (confidence only), for comparison.
    confidence_only = site_shifts.summarise(
        {k: (v[0], None) for k, v in results.items()}, y_test, train_config, confidence_threshold=confidence_threshold
    )
    summary["confidence_only"] = {
        "plain_flagged_rate": confidence_only["plain"]["flagged_rate"],
        "wrong_flagged_rate": confidence_only["wrong_flagged_rate"],
    }
    params = detector.to_dict()
    params["measured_on_test"] = {
        "plain_flagged_rate": summary["plain"]["flagged_rate"],
        "wrong_flagged_rate": summary["wrong_flagged_rate"],
        "wrong_under_credited_shifts": summary["wrong_under_credited_shifts"],
    }
    params["digest"] = ood.digest(params)
    return params, summary

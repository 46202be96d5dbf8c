"""The gates every AI answer passes: ONE implementation for the portal's worker and `manage.py diagnose`.

For a model version and one image:

1. smear check (ml.smear_check, ``ModelVersion.smear_check``): an image that is not a stained blood
   smear gets no subtype (label ``not_a_smear``) and the flag "not a blood smear: <reasons>";
2. otherwise the model answers, and the answer is flagged
   - "outside validated conditions" when the image's OOD score (ml.ood, Mahalanobis distance of its
     penultimate features to the training split, ``ModelVersion.ood``) is above the threshold
     calibrated with the version;
   - "low confidence" when its top probability is below ``settings.ATTENTION_THRESHOLD``.

``inference.worker`` / ``inference.batching`` store the result as Prediction.ood_score and
Prediction.flags; ``training.services.diagnose_paths`` prints it in the ``flag`` column, so the
command line and the portal never disagree. A version without a smear check or OOD model skips that
gate. Parameters are turned into checkers once per version id and kept while the stored parameters
stay the same (a re-attached check is picked up).
"""

import hashlib
import json
import logging

from django.conf import settings

from core.cache import LRUCache

logger = logging.getLogger(__name__)

NOT_A_SMEAR = "not_a_smear"  # the label stored for an image the smear check rejects
OUTSIDE_VALIDATED = "outside validated conditions"
LOW_CONFIDENCE = "low confidence"
CACHE_SIZE = 8

_smear_cache = LRUCache(CACHE_SIZE)  # version pk -> (digest of the stored parameters, SmearCheck or None)
_ood_cache = LRUCache(CACHE_SIZE)  # version pk -> (digest, MahalanobisOOD or None)


def clear_cache():
    _smear_cache.clear()
    _ood_cache.clear()


def _digest(params):
    # OOD parameters (hundreds of KB) carry their own digest, checked when the detector is built:
    # hashing them again for every image cost ~0.9 ms of the worker's CPU per image.
    if isinstance(params.get("digest"), str):
        return params["digest"]
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _cached(cache, version, digest, build):
    key = version.pk
    cached = cache.get(key)
    if cached is not None and cached[0] == digest:
        return cached[1]
    built = build()
    cache.put(key, (digest, built))
    return built


# --- Smear check ------------------------------------------------------------------------------------


def check_for(version):
    """The version's SmearCheck (cached per version id), or None when it has none."""
    from training import registry

    params = getattr(version, "smear_check", None) or {}
    if not params:
        return None
    return _cached(_smear_cache, version, _digest(params), lambda: registry.smear_check_for(version))


def smear_verdict(version, image):
    """(is_smear, reasons) for one uint8 RGB image prepared at the check's size (224 px).

    (True, []) when the version has no smear check. Raises ValueError for an image that is not a
    prepared uint8 (size, size, 3) array at the size the check was fitted at.
    """
    import numpy as np

    check = check_for(version)
    if check is None:
        return True, []
    image = np.asarray(image)
    size = check.image_size
    if image.dtype != np.uint8 or image.shape != (size, size, 3):
        raise ValueError(
            f"smear_verdict needs the image prepared by prepare_image(data, {size}) (uint8, {size}x{size}x3), "
            f"got {image.dtype} {image.shape}"
        )
    result = check.check(image)
    return bool(result["is_smear"]), [str(reason) for reason in result["reasons"]]


def smear_verdict_of(version, source, image=None, size=None, reraise=(), decoded=None):
    """(is_smear, reasons) of an image ``source`` (bytes, path...); ``image`` prepared at ``size`` is
    reused when that is the check's size, else ``decoded`` (``ml.images.decode_image`` of the source)
    is resized rather than the source decoded again. A failing check is logged and lets the image
    through (the gate is an aid; it never fails an analysis); exceptions in ``reraise`` (a time
    limit) pass."""
    from ml.images import prepare_decoded, prepare_image

    try:
        check = check_for(version)
        if check is None:
            return True, []
        if image is not None and size == check.image_size:
            prepared = image
        elif decoded is not None:
            prepared = prepare_decoded(decoded, check.image_size)
        else:
            prepared = prepare_image(source, check.image_size)
        return smear_verdict(version, prepared)
    except reraise:
        raise
    except Exception:  # noqa: BLE001 - see the docstring
        logger.exception("Smear check failed for model version %s; classifying it anyway", getattr(version, "pk", None))
        return True, []


def not_a_smear_flag(reasons):
    """ "not a blood smear: blank frame; out of focus" (the flag of a rejected image)."""
    return "not a blood smear: " + ("; ".join(reasons) if reasons else "unlike the training smears")


def reasons_text(reasons):
    """ "Not a blood smear: blank frame; out of focus" (for logs and messages)."""
    return "Not a blood smear: " + ("; ".join(reasons) if reasons else "unlike the training smears")


# --- OOD and confidence -------------------------------------------------------------------------------


def ood_for(version):
    """The version's fitted MahalanobisOOD (cached per version id), or None.

    A version claimed by a worker carries ``ood_digest`` (inference.claims) and its parameters
    unloaded: a cached detector with that digest is used without loading them."""
    from training import registry

    digest = getattr(version, "ood_digest", None)
    if digest is None:
        params = getattr(version, "ood", None) or {}
        digest = _digest(params) if params else ""
    if digest == "":  # no OOD model
        return None
    return _cached(_ood_cache, version, digest, lambda: registry.ood_detector_for(version))


def confidence_threshold():
    return float(settings.ATTENTION_THRESHOLD)


def needs_features(version):
    """Whether ``assess`` wants the images' penultimate features (the version has an OOD model)."""
    return ood_for(version) is not None


def assess(version, probabilities, features=None, reraise=()):
    """(ood_score or None, flags) for one image's probabilities (K,) and penultimate features (D,)
    (None when the version has no OOD model). A failing OOD score is logged and leaves the
    confidence gate alone; exceptions in ``reraise`` (a time limit) pass."""
    import numpy as np

    flags = []
    score = None
    try:
        detector = ood_for(version)
        if detector is not None and features is not None:
            score = float(detector.score(np.asarray(features, dtype=np.float64)))
            if not np.isfinite(score):
                score = None
            elif detector.threshold is not None and score > detector.threshold:
                flags.append(OUTSIDE_VALIDATED)
    except reraise:
        raise
    except Exception:  # noqa: BLE001 - the gate is an aid; never fail an analysis because of it
        logger.exception("OOD score failed for model version %s", getattr(version, "pk", None))
        score = None
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.size and float(probabilities.max()) < confidence_threshold():
        flags.append(LOW_CONFIDENCE)
    return score, flags


def flag_text(flags):
    """The diagnose ``flag`` column: empty, or the reasons joined by "; "."""
    return "; ".join(flags)

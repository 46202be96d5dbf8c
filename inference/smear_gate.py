"""Is an uploaded image a stained blood smear at all? The serving side of ml.smear_check.

The classifier always answers one of its subtypes, even for a photo, a screenshot, a blank or a badly
out-of-focus frame. Before (or beside) the model, the worker asks:

    is_smear, reasons = smear_verdict(version, image)

``image`` is the upload prepared by ``ml.images.prepare_image(data, 224)`` (uint8 RGB,
224 x 224 x 3, padding black), ``version`` a ModelVersion. The check is the one fitted on the
version's training split and stored in ``ModelVersion.smear_check`` (by ``retrain``, or by
``manage.py model_report --attach-smear-check`` / ``attach_smear_check`` for older versions). A
version without one (or with unusable parameters) checks nothing: ``(True, [])``.

``reasons`` are short phrases for people ("blank frame", "out of focus", "colours unlike a stained
smear", ...). Pure: no database query (beyond reading a deferred ``smear_check`` field once), no
Keras. The SmearCheck is built once per version id and kept while the stored parameters stay the
same (a re-attached check is picked up).
"""

import hashlib
import json

import numpy as np

from core.cache import LRUCache

NOT_A_SMEAR = "not_a_smear"  # the Prediction label the worker stores for a flagged image
CACHE_SIZE = 8

_cache = LRUCache(CACHE_SIZE)  # version pk -> (digest of the stored parameters, SmearCheck or None)


def clear_cache():
    _cache.clear()


def _digest(params):
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def check_for(version):
    """The version's SmearCheck (cached per version id), or None when it has none."""
    from training import registry

    params = getattr(version, "smear_check", None) or {}
    if not params:
        return None
    key, digest = version.pk, _digest(params)
    cached = _cache.get(key)
    if cached is not None and cached[0] == digest:
        return cached[1]
    check = registry.smear_check_for(version)  # None (and a warning) for unusable parameters
    _cache.put(key, (digest, check))
    return check


def smear_verdict(version, image):
    """(is_smear, reasons) for one prepared uint8 RGB image at the check's size (224 px).

    (True, []) when the version has no smear check. Raises ValueError for an image that is not a
    prepared uint8 (size, size, 3) array at the size the check was fitted at.
    """
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


def reasons_text(reasons):
    """ "Not a blood smear: blank frame; out of focus" (for logs and messages)."""
    return "Not a blood smear: " + ("; ".join(reasons) if reasons else "unlike the training smears")

"""What monitoring reads from a model version, read defensively: older versions lack some of it.

- the validated accuracy: ``record.metrics`` (held-out test split, else validation), with its n;
- the calibrated OOD threshold: a version attribute (``ood_threshold``, or ``threshold`` inside an
  ``ood`` mapping) or ``record.metrics["ood"]["threshold"]``. None: drift is not available.

The fitted OOD parameters (``ModelVersion.ood``, where present) hold arrays: only their threshold is
read, by the database, never the whole mapping.
"""

from numbers import Real

from django.db.models.fields.json import KeyTransform

from training.models import ModelVersion


def _number(value):
    return float(value) if isinstance(value, Real) and not isinstance(value, bool) else None


def _metrics(version):
    record = getattr(version, "record", None) if version is not None else None
    metrics = getattr(record, "metrics", None)
    return metrics if isinstance(metrics, dict) else {}


def ood_threshold(version):
    if version is None:
        return None
    direct = _number(getattr(version, "ood_threshold", None))
    if direct is not None:
        return direct
    deferred = version.get_deferred_fields() if hasattr(version, "get_deferred_fields") else set()
    for attribute in ("ood", "ood_model", "ood_detector"):
        if attribute in deferred:  # loading it would cost a query (and its arrays) for a number
            continue
        value = getattr(version, attribute, None)
        if isinstance(value, dict) and _number(value.get("threshold")) is not None:
            return _number(value["threshold"])
    ood = _metrics(version).get("ood")
    return _number(ood.get("threshold")) if isinstance(ood, dict) else None


def validated_accuracy(version):
    """(accuracy, n) on the version's held-out split, or (None, None) when none was recorded."""
    metrics = _metrics(version)
    for split in ("test", "val"):
        values = metrics.get(split)
        if isinstance(values, dict) and _number(values.get("accuracy")) is not None:
            n = values.get("n")
            return _number(values["accuracy"]), int(n) if isinstance(n, int) and n > 0 else None
    return None, None


# ModelRecord columns monitoring never reads (the split lists every training file: ~300 KB).
UNUSED_RECORD_FIELDS = ("record__split", "record__plots", "record__preprocessing", "record__versions")


def heavy_version_fields(prefix=""):
    """ModelVersion columns holding fitted parameters (smear check, OOD arrays) that monitoring never reads."""
    fields = {field.name for field in ModelVersion._meta.get_fields()}
    return [f"{prefix}{name}" for name in sorted({"smear_check", "ood"} & fields)]


def versions_with_metrics(ids):
    """{id: version} with their training metrics and OOD threshold in one query."""
    rows = ModelVersion.objects.filter(pk__in=set(ids)).select_related("record").defer(*UNUSED_RECORD_FIELDS)
    rows = rows.defer(*heavy_version_fields())
    fields = {field.name for field in ModelVersion._meta.get_fields()}
    if "ood" in fields and "ood_threshold" not in fields:
        rows = rows.annotate(ood_threshold=KeyTransform("threshold", "ood"))
    return {version.pk: version for version in rows}

"""The model registry: where trained models live, which one is active, and loading them safely.

Inference workers use two calls (and keep loaded models in their own cache, inference.worker):

    version = registry.get_active_version()        # ModelVersion or None (require_active_version raises)
    model = registry.load_model(version)           # keras.Model, sha256-checked, safe_mode=True

``predict_prepared`` runs a model on arrays made by ml.images.prepare_image, the serving
preparation; the `diagnose` command uses it, so serving and diagnosis cannot prepare images differently.

"Is this a stained blood smear at all?": ``ModelVersion.smear_check`` holds the parameters of the
check (ml.smear_check) fitted on the version's training split; ``register_model`` copies
them from the run's metadata, ``attach_smear_check`` stores one on an older version, and
``smear_check_for(version)`` gives the SmearCheck (None when the version has none).

A registered version is a ModelVersion (what serving needs) and its ModelRecord (how it was made
and how well it did: preprocessing, metrics, plots, split, library versions; the same facts as its
metadata.json), created together by ``register_model``.

Files: a registered model lives in ``settings.MODEL_DIR/<version name>/`` (model.keras,
metadata.json, plots/*.png); ``ModelVersion.file_path`` and the plot paths are recorded relative to
MODEL_DIR. The default model shipped with the repository stays where it is, under
``settings.SHIPPED_MODEL_DIR``, and is recorded with an absolute path.

Nothing here imports Keras at module level (only ``load_model`` does), so the web process can use
the registry without paying for a backend import.
"""

import datetime
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ml import artifacts
from ml.classes import CLASS_NAMES
from training.audit_events import COMMAND_LINE, audit_promotion, audit_registration
from training.models import ModelRecord, ModelVersion

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
PLOTS_DIR = "plots"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
logger = logging.getLogger(__name__)


class RegistryError(Exception):
    """A registry operation cannot be done; the message says which version and why."""


class UnknownModelVersion(RegistryError, LookupError):
    pass


class NoActiveModel(RegistryError, LookupError):
    pass


class ModelFileMissing(RegistryError, FileNotFoundError):
    pass


class ModelIntegrityError(RegistryError, artifacts.ModelIntegrityError):
    """The file on disk is not the one recorded for the version (changed, truncated or replaced)."""


# --------------------------------------------------------------------------------------------------
# Paths


def model_dir():
    return Path(settings.MODEL_DIR)


def resolve_path(recorded):
    """Absolute path of a recorded file path (relative ones are under settings.MODEL_DIR)."""
    path = Path(recorded)
    return path if path.is_absolute() else model_dir() / path


def model_path(version):
    """Absolute path of the version's .keras file."""
    return resolve_path(version.file_path)


def _is_within(path, folder):
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Looking versions up


def get_version(ref):
    """The ModelVersion named ``ref``, or with id ``ref`` (an int or a string of digits)."""
    if isinstance(ref, ModelVersion):
        return ref
    text = str(ref).strip()
    version = ModelVersion.objects.filter(name=text).first()
    if version is None and text.isdigit():
        version = ModelVersion.objects.filter(pk=int(text)).first()
    if version is None:
        known = ", ".join(ModelVersion.objects.order_by("-created_at").values_list("name", flat=True)[:10])
        raise UnknownModelVersion(
            f"No model version named or numbered {text!r}."
            + (f" Known versions: {known}" if known else " No model is registered yet: run `retrain`.")
        )
    return version


def get_active_version():
    """The active ModelVersion, or None when no model has been promoted."""
    return ModelVersion.active()


def require_active_version():
    version = get_active_version()
    if version is None:
        raise NoActiveModel("No model version is active: promote one (admin, or `manage.py promote VERSION`).")
    return version


def resolve_version(ref=None):
    """``ref`` (name, id or ModelVersion) when given, else the active version."""
    return require_active_version() if ref in (None, "") else get_version(ref)


# --------------------------------------------------------------------------------------------------
# Verifying, loading, activating


def _fetch_from_store(version):
    """The version's local path, downloaded from the S3 model store first when this node lacks it."""
    from training import model_store

    try:
        return model_store.fetch(version)
    except model_store.NotInStore as exc:
        raise ModelFileMissing(str(exc)) from exc
    except model_store.DownloadMismatch as exc:
        raise ModelIntegrityError(str(exc)) from exc


def verify_file(version):
    """Check the version's file exists and has the recorded sha256; returns its absolute path."""
    path = _fetch_from_store(version)
    if not path.is_file():
        raise ModelFileMissing(f"Model file of version {version.name!r} is missing: {path}")
    if not version.sha256:
        raise ModelIntegrityError(f"Model version {version.name!r} has no recorded sha256; refusing it.")
    actual = artifacts.sha256_file(path)
    if actual != version.sha256.lower():
        raise ModelIntegrityError(
            f"Model file of version {version.name!r} ({path}) has sha256 {actual}, but {version.sha256} was "
            "recorded: the file was changed or replaced; refusing to use it."
        )
    return path


def load_model(version):
    """Load the version's model with safe_mode=True, refusing a file whose sha256 is not the recorded one.

    The bytes are checked and loaded from one private copy (ml.artifacts.load_model_verified),
    so the file cannot be swapped between the check and the load. Raises ModelFileMissing or
    ModelIntegrityError (both RegistryError), naming the version.
    """
    path = _fetch_from_store(version)
    if not path.is_file():
        raise ModelFileMissing(f"Model file of version {version.name!r} is missing: {path}")
    if not version.sha256:
        raise ModelIntegrityError(f"Model version {version.name!r} has no recorded sha256; refusing it.")
    try:
        return artifacts.load_model_verified(path, version.sha256)
    except artifacts.ModelIntegrityError as exc:
        raise ModelIntegrityError(f"Refusing model version {version.name!r}: {exc}") from exc


def predict_prepared(model, arrays, batch_size=32):
    """Softmax probabilities (N, K) for images already made by ml.images.prepare_image.

    Columns follow the version's ``class_names``. The model takes float32 RGB 0..255; its own
    layers scale pixels for the architecture, so nothing else may be done to the arrays.
    """
    import numpy as np

    from ml.evaluate import predict_probabilities

    batch = np.asarray(arrays)
    if batch.ndim == 3:
        batch = batch[None]
    return predict_probabilities(model, batch.astype("float32"), batch_size=batch_size)


def activate(version, verify=True, *, actor=None, source=COMMAND_LINE, request=None):
    """Make ``version`` (ModelVersion, name or id) the one active model; with ``verify``, refuse a
    version whose file is missing or altered. Exclusive and atomic (see ModelVersion.activate), and
    audited in the same transaction (training.audit_events: ``actor``, ``source``, ``request``)."""
    version = get_version(version)
    if verify:
        verify_file(version)
    with transaction.atomic():
        previous = version.activate()
        audit_promotion(version, previous, actor=actor, source=source, request=request)
    return version


# --------------------------------------------------------------------------------------------------
# Registering


def current_git_commit():
    """HEAD of the repository (or settings.GIT_COMMIT, for images without .git), else ""."""
    commit = settings.GIT_COMMIT.strip()
    if commit:
        return commit[:40]
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    output = completed.stdout.strip()
    return output if completed.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", output) else ""


def _default_name(architecture, trained_at):
    stamp = (trained_at or timezone.now()).astimezone(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{architecture}-{stamp}"


def _unique_name(base):
    base = _NAME_UNSAFE.sub("-", base).strip("-.")[:90] or "model"
    name, n = base, 1
    while ModelVersion.objects.filter(name=name).exists() or (model_dir() / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _copy_file(source, destination):
    """Copy bytes to destination via a temporary file in the same folder and an atomic rename."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, destination)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _metrics_record(result):
    metrics = dict(result.get("metrics") or {})
    metrics["training"] = {
        key: result.get(key)
        for key in (
            "params",
            "epochs_run",
            "best_epoch",
            "stopped_early",
            "stopped_by_time_limit",
            "resumed_from_epoch",
            "training_seconds",
            "hardware",
            "train_config",
            "dataset",
        )
        if key in result
    }
    return metrics


def _trained_at(result):
    value = result.get("trained_at")
    parsed = parse_datetime(value) if isinstance(value, str) else value
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, datetime.UTC)
    return parsed or timezone.now()


def find_registered(result):
    """An existing version registered from the same training result (same file bytes), or None."""
    sha256 = result.get("sha256")
    if not sha256:
        return None
    return ModelVersion.objects.filter(sha256=sha256, architecture=result.get("architecture", "")).first()


def register_model(result, *, name=None, trained_by=None, notes="", actor=None, source=COMMAND_LINE, request=None):
    """Register a ``ml.pipeline.run_training`` result (or its metadata.json dict + paths).

    Copies the .keras file, its plots and metadata into ``MODEL_DIR/<name>/``: everything is written
    into a temporary folder beside it, checked against the recorded sha256, then renamed into place
    (one atomic rename), and only then is the ModelVersion row created. A model already under
    SHIPPED_MODEL_DIR is recorded in place with its absolute path. Registering the same trained file
    twice returns the existing version (a resumed retrain does not duplicate versions). A new version
    is audited (training.audit_events: ``actor``, ``source``, ``request``).
    """
    audit_context = dict(actor=actor, source=source, request=request)
    source = Path(result["model_path"]).resolve()
    output_dir = Path(result.get("output_dir") or source.parent)
    if not source.is_file():
        raise ModelFileMissing(f"Trained model file not found: {source}")
    sha256 = artifacts.sha256_file(source)
    if result.get("sha256") and result["sha256"] != sha256:
        raise ModelIntegrityError(
            f"{source} has sha256 {sha256}, but its training metadata says {result['sha256']}; not registering it."
        )
    existing = find_registered({**result, "sha256": sha256})
    if existing is not None:
        if not existing.smear_check and result.get("smear_check"):  # registered before checks were fitted
            params = _smear_check_from_result(result)
            if params:
                ModelVersion.objects.filter(pk=existing.pk).update(smear_check=params)
                existing.smear_check = params
        ood = _ood_from_result(result)
        if ood and (existing.ood or {}).get("digest") != ood.get("digest"):  # fitted after registration
            ModelVersion.objects.filter(pk=existing.pk).update(ood=ood)
            existing.ood = ood
        return existing

    class_names = list(result.get("class_names") or CLASS_NAMES)
    trained_at = _trained_at(result)
    record = dict(
        preprocessing=result.get("preprocessing") or {},
        metrics=_metrics_record(result),
        split=result.get("split") or {},
        versions={
            **(result.get("versions") or {}),
            **({"hardware": result["hardware"]} if "hardware" in result else {}),
        },
    )
    fields = dict(
        architecture=result["architecture"],
        sha256=sha256,
        class_names=class_names,
        input_size=int(result["input_size"]),
        data_fingerprint=result.get("data_fingerprint") or "",
        smear_check=_smear_check_from_result(result),
        ood=_ood_from_result(result),
        git_commit=current_git_commit(),
        trained_by=trained_by,
        trained_at=trained_at,
        notes=notes,
    )

    if _is_within(source, settings.SHIPPED_MODEL_DIR):
        plots = {
            key: str((output_dir / rel).resolve())
            for key, rel in (result.get("plots") or {}).items()
            if (output_dir / rel).is_file()
        }
        return _create_version(
            dict(
                name=_unique_name(name or _default_name(fields["architecture"], trained_at)),
                file_path=str(source),
                **fields,
            ),
            dict(record, plots=plots),
            audit_context,
        )

    root = model_dir()
    root.mkdir(parents=True, exist_ok=True)
    name = _unique_name(name or _default_name(fields["architecture"], trained_at))
    staging = Path(tempfile.mkdtemp(prefix=f".incoming-{name}-", dir=root))
    final = root / name
    try:
        _copy_file(source, staging / MODEL_FILE)
        if artifacts.sha256_file(staging / MODEL_FILE) != sha256:
            raise ModelIntegrityError(f"Copy of {source} does not match its sha256; not registering it.")
        plots = {}
        for key, rel in (result.get("plots") or {}).items():
            plot_source = output_dir / rel
            if plot_source.is_file():
                _copy_file(plot_source, staging / PLOTS_DIR / plot_source.name)
                plots[key] = f"{name}/{PLOTS_DIR}/{plot_source.name}"
        metadata = {k: v for k, v in result.items() if k not in ("model_path", "metadata_path")}
        metadata.update(
            version_name=name,
            model_file=MODEL_FILE,
            sha256=sha256,
            plots={k: f"{PLOTS_DIR}/{Path(v).name}" for k, v in plots.items()},
        )
        artifacts.write_metadata(staging / METADATA_FILE, metadata)
        staging.chmod(0o755)
        os.rename(staging, final)  # atomic; fails if the folder exists (name clash), never overwrites
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        from training import model_store

        if model_store.enabled():  # other nodes download it from there (sha256-checked)
            model_store.publish_folder(name)
        return _create_version(
            dict(name=name, file_path=f"{name}/{MODEL_FILE}", **fields), dict(record, plots=plots), audit_context
        )
    except Exception:
        shutil.rmtree(final, ignore_errors=True)  # no row, no orphan folder
        raise


def _create_version(fields, record, audit_context):
    """The ModelVersion row, its ModelRecord and its audit event: all or nothing."""
    with transaction.atomic():
        version = ModelVersion.objects.create(**fields)
        ModelRecord.objects.create(version=version, **record)
        audit_registration(version, **audit_context)
    return version


# --------------------------------------------------------------------------------------------------
# The "not a stained blood smear" check


SMEAR_CHECK_SIZE = 224  # serving prepares the image at this size for the check (training.gates)


def validate_smear_check(params):
    """The SmearCheck of ``params`` (a SmearCheck.to_dict() dict, possibly with extra keys such as
    "fitted_on" and "validation"); raises RegistryError when it is unusable or was fitted at
    another size than SMEAR_CHECK_SIZE."""
    from ml.smear_check import SmearCheck

    if not isinstance(params, dict) or not params:
        raise RegistryError("No smear-check parameters given.")
    try:
        check = SmearCheck.from_dict(params)
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"Unusable smear-check parameters: {exc}") from exc
    if check.image_size != SMEAR_CHECK_SIZE:
        raise RegistryError(
            f"This smear check was fitted on {check.image_size}x{check.image_size} images; serving checks "
            f"{SMEAR_CHECK_SIZE}x{SMEAR_CHECK_SIZE} images (fit it at {SMEAR_CHECK_SIZE} px)."
        )
    return check


def _smear_check_from_result(result):
    """The check's parameters recorded by run_training ({} for older runs or tiny ones without)."""
    params = result.get("smear_check")
    if not params:
        return {}
    try:
        validate_smear_check(params)
    except RegistryError as exc:  # never lose a trained model over its (optional) check
        logger.warning("Registering %s without its smear check: %s", result.get("model_path"), exc)
        return {}
    params = dict(params)
    rate = result.get("smear_check_false_flag_rate")
    if rate is not None and not isinstance(params.get("validation"), dict):
        params["validation"] = {"rate": rate}
    return params


def smear_check_params(data):
    """Smear-check parameters from a loaded JSON file: the parameters themselves (a run's or a
    report's smear_check.json) or a run's metadata.json (its "smear_check" entry)."""
    is_metadata = isinstance(data, dict) and ("smear_check" in data or "model_file" in data)
    if is_metadata and data.get("kind") != "telediag.smear_check":
        params = data.get("smear_check") or {}
        rate = data.get("smear_check_false_flag_rate")
        if params and rate is not None and not isinstance(params.get("validation"), dict):
            params = {**params, "validation": {"rate": rate}}
        return params
    return data


def attach_smear_check(version, params):
    """Store the check ``params`` (see smear_check_params) on ``version`` (ModelVersion, name or id),
    e.g. for a model trained before run_training fitted one. Replaces any stored check. Returns the
    version. Raises RegistryError for unusable parameters."""
    version = get_version(version)
    params = smear_check_params(params)
    validate_smear_check(params)
    ModelVersion.objects.filter(pk=version.pk).update(smear_check=params)
    version.smear_check = params
    return version


def smear_check_for(version):
    """The version's SmearCheck, or None when it has none (or its stored parameters are unusable)."""
    from ml.smear_check import SmearCheck

    params = getattr(version, "smear_check", None)
    if not params:
        return None
    try:
        return SmearCheck.from_dict(params)
    except (KeyError, TypeError, ValueError) as exc:
        logger.warning(
            "Model version %s has unusable smear-check parameters (%s); not checking images.",
            getattr(version, "name", version),
            exc,
        )
        return None


def smear_check_false_flag_rate(version):
    """Share of real validation smears the version's check flagged when it was fitted, or None."""
    validation = (getattr(version, "smear_check", None) or {}).get("validation") or {}
    rate = validation.get("rate")
    return float(rate) if rate is not None else None


# --------------------------------------------------------------------------------------------------
# The out-of-distribution model ("outside validated conditions")


def validate_ood(params):
    """The MahalanobisOOD of ``params`` (ml.ood.MahalanobisOOD.to_dict()); raises RegistryError when
    it is unusable, has no threshold or its digest does not match its content."""
    from ml import ood

    if not isinstance(params, dict) or not params:
        raise RegistryError("No OOD parameters given.")
    if params.get("digest") and params["digest"] != ood.digest(params):
        raise RegistryError("The OOD parameters do not match their digest (altered?).")
    try:
        detector = ood.MahalanobisOOD.from_dict(params)
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"Unusable OOD parameters: {exc}") from exc
    if detector.threshold is None:
        raise RegistryError("The OOD parameters have no calibrated threshold.")
    return detector


def _ood_from_result(result):
    params = result.get("ood")
    if not params:
        return {}
    try:
        validate_ood(params)
    except RegistryError as exc:  # never lose a trained model over its (optional) OOD model
        logger.warning("Registering %s without its OOD model: %s", result.get("model_path"), exc)
        return {}
    return dict(params)


def attach_ood(version, params):
    """Store the OOD ``params`` (or a metadata.json dict with an "ood" entry) on ``version``."""
    version = get_version(version)
    if isinstance(params, dict) and "ood" in params and "kind" not in params:
        params = params["ood"]
    validate_ood(params)
    ModelVersion.objects.filter(pk=version.pk).update(ood=params)
    version.ood = params
    return version


def ood_detector_for(version):
    """The version's MahalanobisOOD, or None when it has none (or its parameters are unusable)."""
    params = getattr(version, "ood", None)
    if not params:
        return None
    try:
        return validate_ood(params)
    except RegistryError as exc:
        logger.warning("Model version %s: %s; no OOD score.", getattr(version, "name", version), exc)
        return None

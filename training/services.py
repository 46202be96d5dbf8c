"""Training, evaluation and diagnosis as plain functions: the management commands and the Celery task
are thin wrappers around these.

- ``retrain(options, ...)``: train each architecture (resumable), evaluate on the held-out test split,
  register every model as a ModelVersion, build the comparison table, optionally promote the best.
- ``execute_training_run(run_id)``: the same for a TrainingRun row (what ``retrain_task`` runs).
- ``evaluate_version(version, data_dir)``: the training metrics for any registered model on a folder.
- ``diagnose_paths(paths, version)``: per-file probabilities with the serving preprocessing.

User errors (bad folder, unknown architecture, ...) raise TrainingError with a message meant for
the person who typed the command or filled in the admin form.
"""

import datetime
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.task_lookup import task_named
from ml.classes import CLASS_NAMES
from training import registry
from training.audit_events import COMMAND_LINE
from training.errors import TrainingError
from training.models import ModelVersion, TrainingRun
from training.options import RetrainOptions, check_data_dir

logger = logging.getLogger(__name__)

RETRAIN_TASK = "training.tasks.retrain_task"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
# Keras' own file names for the "notop" ImageNet weights, then simpler names we also accept.
WEIGHT_FILE_PATTERNS = {
    "mobilenetv2": (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_*_no_top.h5",
        "mobilenet_v2*no_top*.h5",
        "mobilenetv2*.h5",
        "mobilenet_v2*.h5",
    ),
    "resnet50": ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet50*notop*.h5", "resnet50*.h5"),
    "vgg19": ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg19*notop*.h5", "vgg19*.h5"),
}


def scan(data_dir, require_all_classes=True):
    """ml.dataset.scan_dataset with its errors turned into TrainingError."""
    from ml.dataset import DatasetError, scan_dataset

    check_data_dir(data_dir)
    try:
        return scan_dataset(data_dir, require_all_classes=require_all_classes)
    except DatasetError as exc:
        raise TrainingError(str(exc)) from exc


def find_weights(weights_dir, architecture):
    """The local ImageNet weights file for ``architecture`` in ``weights_dir`` (None for convnets)."""
    if weights_dir is None or architecture not in WEIGHT_FILE_PATTERNS:
        return None
    folder = Path(weights_dir)
    for candidate in (f"{architecture}.weights.h5", f"{architecture}.h5"):
        if (folder / candidate).is_file():
            return folder / candidate
    for pattern in WEIGHT_FILE_PATTERNS[architecture]:
        matches = sorted(folder.glob(pattern))
        if matches:
            return matches[-1]
    raise TrainingError(
        f"No ImageNet weights for {architecture} in {folder} (expected e.g. "
        f"{WEIGHT_FILE_PATTERNS[architecture][0].replace('*', '224')} or {architecture}.weights.h5)."
    )


def default_output_dir(label=None):
    stamp = timezone.now().astimezone(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return Path(settings.VAR_DIR) / "training" / (label or f"run-{stamp}")


# --------------------------------------------------------------------------------------------------
# Retraining


@dataclass
class RetrainResult:
    versions: list
    table: str
    output_dir: Path
    promoted: ModelVersion = None
    trained: list = field(default_factory=list)  # architectures trained (or resumed) by this call
    reused: list = field(default_factory=list)  # architectures already finished in output_dir


def _completed_result(arch_dir, options, architecture, data_fingerprint):
    """metadata of a finished run in ``arch_dir`` with the same settings, whose model file is intact."""
    from ml import artifacts
    from ml.architectures import default_learning_rate
    from ml.pipeline import METADATA_FILE, MODEL_FILE
    from ml.train import with_config_defaults

    metadata_path, model_file = arch_dir / METADATA_FILE, arch_dir / MODEL_FILE
    if not (metadata_path.is_file() and model_file.is_file()):
        return None
    try:
        metadata = artifacts.read_json(metadata_path)
    except (OSError, ValueError):
        return None
    config = with_config_defaults(metadata.get("train_config") or {})
    split = metadata.get("split") or {}
    wanted = {
        "architecture": architecture,
        "image_size": options.image_size,
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "seed": options.seed,
        "augment": options.augment,
        "normalisation": options.normalisation,
        "augment_grayscale": options.grayscale_augment,
        "augment_stain": options.stain_augment,
        "augment_site": sorted(options.site_augment or []),
        "learning_rate": options.learning_rate or default_learning_rate(architecture),
    }
    if any(config.get(key) != value for key, value in wanted.items()):
        return None
    if split.get("mode") != options.split_mode or split.get("max_per_class") != options.max_per_class:
        return None
    if (metadata.get("dataset") or {}).get("fingerprint") != data_fingerprint:
        return None  # trained on other images
    if metadata.get("sha256") != artifacts.sha256_file(model_file):
        return None
    return {**metadata, "output_dir": str(arch_dir), "model_path": str(model_file), "metadata_path": str(metadata_path)}


def _check_image_size(architectures, image_size):
    from ml.architectures import ARCHITECTURES

    too_small = [
        f"{a} (needs >= {ARCHITECTURES[a].min_image_size})"
        for a in architectures
        if image_size < ARCHITECTURES[a].min_image_size
    ]
    if too_small:
        raise TrainingError(f"--image-size {image_size} is too small for {', '.join(too_small)}.")


def _comparison_rows(versions):
    rows = []
    for version in versions:
        training = (version.record.metrics or {}).get("training") or {}
        rows.append(
            {
                "architecture": version.architecture,
                "metrics": version.record.metrics,
                "params": training.get("params"),
                "epochs_run": training.get("epochs_run"),
                "training_seconds": training.get("training_seconds"),
            }
        )
    return rows


def comparison_table(versions):
    """The study's Table II for registered versions (test-split metrics), plus validation accuracy."""
    from ml.evaluate import format_comparison_table

    table = format_comparison_table(_comparison_rows(versions))
    lines = table.splitlines()
    names = ["Version"] + ["-" * 7] + [v.name for v in versions]
    vals = ["Val. acc."] + ["-" * 9] + [_pct(v.val_accuracy) for v in versions]
    width_n = max(len(n) for n in names)
    width_v = max(len(v) for v in vals)
    out = []
    for i, line in enumerate(lines):
        name = names[i] if i != 1 else "-" * width_n
        val = vals[i] if i != 1 else "-" * width_v
        out.append(f"{name.ljust(width_n)}  {line}  {val.rjust(width_v)}")
    return "Test-split metrics (validation accuracy chooses --promote best)\n" + "\n".join(out)


def _pct(value):
    return "-" if value is None else f"{100 * float(value):.2f}%"


SPREAD_METRICS = ("accuracy", "macro_f1", "ece")


def seed_spread(versions, part="test"):
    """Mean, sample standard deviation, min and max of each SPREAD_METRICS over ``versions``
    (e.g. one recipe trained with several seeds), from their recorded ``part`` metrics.
    Versions without that part are left out; returns {metric: {...}} and "n"."""
    import statistics

    rows = [(version.record.metrics or {}).get(part) for version in versions]
    rows = [row for row in rows if row]
    summary = {
        "n": len(rows),
        "part": part,
        "versions": [v.name for v in versions if (v.record.metrics or {}).get(part)],
    }
    for metric in SPREAD_METRICS:
        values = [float(row[metric]) for row in rows if row.get(metric) is not None]
        summary[metric] = {
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values, default=None),
            "max": max(values, default=None),
            "values": values,
        }
    return summary


def format_seed_spread(summary):
    lines = [f"Over {summary['n']} model versions ({summary['part']} split): mean ± sample std [min .. max]"]
    for metric in SPREAD_METRICS:
        stats = summary[metric]
        if stats["mean"] is None:
            continue
        scale, unit, digits = (100, " points", 2) if metric == "accuracy" else (1, "", 3)
        std = "-" if stats["std"] is None else f"{scale * stats['std']:.{digits}f}"
        lines.append(
            f"  {metric}: {scale * stats['mean']:.{digits}f} ± {std}{unit} "
            f"[{scale * stats['min']:.{digits}f} .. {scale * stats['max']:.{digits}f}]"
        )
    return "\n".join(lines)


def describe_metrics(version):
    """Human-readable metrics of one registered version (validation and test)."""
    lines = [
        f"{version.name} ({version.architecture}, {version.input_size}px): {registry.model_path(version)}",
        f"  sha256 {version.sha256}",
    ]
    for part, label in (("val", "validation"), ("test", "test")):
        metrics = (version.record.metrics or {}).get(part)
        if metrics:
            lines.extend("  " + line for line in format_metrics(metrics, title=f"{label} split").splitlines())
    return "\n".join(lines)


def format_metrics(metrics, title=None):
    names = metrics.get("class_names") or list(CLASS_NAMES)
    lines = []
    if title:
        lines.append(f"{title}: {metrics.get('n', 0)} images")
    lines.append(
        f"accuracy {_pct(metrics.get('accuracy'))}  loss {metrics.get('loss', 0):.4f}  "
        f"macro-F1 {metrics.get('macro_f1', 0):.4f}  ECE {metrics.get('ece', 0):.4f}"
    )
    width = max(len(n) for n in names)
    lines.append(f"{'class'.ljust(width)}  precision  recall      F1  support")
    for name in names:
        row = (metrics.get("per_class") or {}).get(name) or {}
        lines.append(
            f"{name.ljust(width)}  {row.get('precision', 0):9.4f}  {row.get('recall', 0):6.4f}  "
            f"{row.get('f1', 0):6.4f}  {row.get('support', 0):7d}"
        )
    matrix = metrics.get("confusion_matrix")
    if matrix:
        lines.append("confusion matrix (rows true, columns predicted): " + "  ".join(n for n in names))
        cell = max(4, max(len(str(v)) for row in matrix for v in row))
        for name, row in zip(names, matrix):
            lines.append(f"{name.ljust(width)}  " + " ".join(str(v).rjust(cell) for v in row))
    return "\n".join(lines)


def retrain(options, *, trained_by=None, log=None, progress=2, source=COMMAND_LINE):
    """Train, evaluate, register (and optionally promote) each requested architecture.

    ``options``: RetrainOptions. ``log``: callable receiving progress lines. ``progress``: Keras
    verbosity for fit (False, True or 2 = one line per epoch). All architectures share one split: the
    first one's split record is reused for the others, so the comparison is on the same test images.
    Re-running with the same ``output_dir`` skips finished architectures and resumes an interrupted
    one from its last finished epoch. ``trained_by`` and ``source`` go into the audit events of the
    registrations and the promotion (training.audit_events). Returns a RetrainResult.
    """
    from ml.dataset import DatasetError
    from ml.pipeline import run_training

    log = log or (lambda line: None)
    options = options.validate(check_paths=True)
    _check_image_size(options.architectures, options.image_size)
    weights = {arch: find_weights(options.weights_dir, arch) for arch in options.architectures}
    dataset = scan(options.data_dir)
    counts = ", ".join(f"{name} {count}" for name, count in dataset.counts().items())
    output_dir = (options.output_dir or default_output_dir()).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    log(f"Data: {dataset.root} ({len(dataset)} images: {counts})")
    log(f"Output folder (re-run with --output {output_dir} to resume): {output_dir}")

    fingerprint = dataset.fingerprint()
    versions, trained, reused, split_record = [], [], [], None
    for index, architecture in enumerate(options.architectures, start=1):
        arch_dir = output_dir / architecture
        result = _completed_result(arch_dir, options, architecture, fingerprint)
        if result is not None:
            reused.append(architecture)
            log(f"[{index}/{len(options.architectures)}] {architecture}: already trained in {arch_dir}, reusing it")
        else:
            log(
                f"[{index}/{len(options.architectures)}] {architecture}: training "
                f"({options.epochs} epochs, {options.image_size}px, {options.split_mode} split)"
            )
            try:
                result = run_training(
                    dataset.root,
                    architecture,
                    arch_dir,
                    weights_path=weights[architecture],
                    split_record=split_record,
                    progress=progress,
                    **options.run_training_kwargs(),
                )
            except (DatasetError, ValueError) as exc:
                raise TrainingError(f"{architecture}: {exc}") from exc
            trained.append(architecture)
        if split_record is None:
            split_record = result.get("split")
        version = registry.register_model(result, trained_by=trained_by, actor=trained_by, source=source)
        versions.append(version)
        log(describe_metrics(version))

    table = comparison_table(versions)
    log("")
    log(table)
    promoted = None
    if options.promote == "best":
        promoted = best_version(versions)
        registry.activate(promoted, actor=trained_by, source=source)
        log(
            f"\nPromoted {promoted.name} (best validation accuracy {_pct(promoted.val_accuracy)}): now the active model."
        )
    elif registry.get_active_version() is None:
        log("\nNo model is active yet: promote one with `manage.py promote VERSION` or in the admin.")
    return RetrainResult(
        versions=versions, table=table, output_dir=output_dir, promoted=promoted, trained=trained, reused=reused
    )


def best_version(versions):
    """Highest validation accuracy; ties go to the lower validation loss, then the earlier one."""

    def key(item):
        index, version = item
        val = (version.record.metrics or {}).get("val") or {}
        return (val.get("accuracy") or 0.0, -(val.get("loss") if val.get("loss") is not None else float("inf")), -index)

    return max(enumerate(versions), key=key)[1]


def promote(ref):
    """Activate a version by name or id (refusing a missing or altered file)."""
    try:
        return registry.activate(ref, verify=True)
    except registry.RegistryError as exc:
        raise TrainingError(str(exc)) from exc


# --------------------------------------------------------------------------------------------------
# Training runs (admin + Celery)


def enqueue_training_run(run):
    """Queue ``retrain_task`` for ``run``; if the broker cannot be reached, the run is marked failed."""
    try:
        task_named(RETRAIN_TASK).delay(run.pk)
    except Exception as exc:  # any broker failure: say so on the run
        logger.exception("Could not queue training run %s", run.pk)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.FAILED,
            finished_at=timezone.now(),
            error=f"Could not queue the training task (is the broker up?): {exc}",
        )
        return False
    return True


def execute_training_run(run_id, progress=2):
    """Run a queued TrainingRun through ``retrain``; records status, log, summary and versions on it.

    Only a run in state "queued" is started (claimed atomically), so a duplicate delivery is a no-op.
    Returns the run.
    """
    with transaction.atomic():
        claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.RUNNING,
            started_at=timezone.now(),
            finished_at=None,
            error="",
            progress="starting",
        )
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or not claimed:
        logger.warning(
            "Training run %s is not queued (missing or %s); not started", run_id, run.status if run else "deleted"
        )
        return run
    if not run.options.get("output_dir"):
        run.options = {**run.options, "output_dir": str(default_output_dir(f"run-{run.pk}"))}
        TrainingRun.objects.filter(pk=run.pk).update(options=run.options)

    lines = [run.log] if run.log else []

    def log(line):
        lines.append(line)
        logger.info("training run %s: %s", run.pk, line)
        update = {"log": "\n".join(lines)}
        first = line.strip().splitlines()[0] if line.strip() else ""
        if first.startswith("["):
            update["progress"] = first[:500]
        TrainingRun.objects.filter(pk=run.pk).update(**update)

    try:
        result = retrain(
            RetrainOptions.from_json(run.options),
            trained_by=run.requested_by,
            log=log,
            progress=progress,
            source=f"training run {run.pk}",
        )
    except BaseException as exc:
        message = (
            str(exc)
            if isinstance(exc, TrainingError)
            else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        )
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.FAILED,
            finished_at=timezone.now(),
            error=message or type(exc).__name__,
            progress="failed",
        )
        if isinstance(exc, TrainingError):
            run.refresh_from_db()
            return run
        raise
    run.versions.add(*result.versions)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
        summary=result.table,
        progress=f"done: {len(result.versions)} model(s)"
        + (f", promoted {result.promoted.name}" if result.promoted else ""),
    )
    run.refresh_from_db()
    return run


# --------------------------------------------------------------------------------------------------
# Evaluation and diagnosis


def _model_summary(version):
    return {
        "id": version.pk,
        "name": version.name,
        "architecture": version.architecture,
        "sha256": version.sha256,
        "input_size": version.input_size,
        "class_names": list(version.class_names),
        "is_active": version.is_active,
    }


def _label_map(version):
    """Index in the model's outputs of each CLASS_NAMES entry (models record their own class order)."""
    names = list(version.class_names or CLASS_NAMES)
    missing = [c for c in CLASS_NAMES if c not in names]
    if missing:
        raise TrainingError(f"Model {version.name} has no output for class(es) {', '.join(missing)}.")
    return [names.index(c) for c in CLASS_NAMES], names


def _samples_of_recorded_split(version, dataset, part):
    from ml.dataset import DatasetError
    from ml.splits import SPLIT_NAMES, from_record

    if part not in SPLIT_NAMES:
        raise TrainingError(f"Unknown split part {part!r}; choose from {', '.join(SPLIT_NAMES)}.")
    if not (version.record.split or {}).get("splits"):
        raise TrainingError(f"Model {version.name} has no recorded split to take the {part} images from.")
    try:
        samples = getattr(from_record(version.record.split, dataset), part)
    except DatasetError as exc:
        raise TrainingError(f"The split recorded with {version.name} does not match {dataset.root}: {exc}") from exc
    if not samples:
        raise TrainingError(f"The split recorded with {version.name} has no {part} images.")
    return samples


def evaluate_version(version, data_dir, *, batch_size=32, max_per_class=None, split_part=None, flips=False):
    """Evaluate a registered model on a labelled folder (same layout and metrics as training).

    ``split_part`` ("train", "val" or "test"): only that part of the split recorded with the model
    (the folder must hold the images it was trained on, unchanged). ``flips``: test-time
    augmentation, the mean over the image and its three flips (ml.evaluate.predict_with_flips).
    Returns {"model": ..., "data": ..., "metrics": metrics_from_probabilities(...)}; the metrics use
    the model's own class order.
    """
    import numpy as np

    from ml.dataset import DatasetError, limit_per_class, load_arrays
    from ml.evaluate import metrics_from_probabilities, predict_probabilities, predict_with_flips

    dataset = scan(data_dir, require_all_classes=False)
    samples = dataset.samples if split_part is None else _samples_of_recorded_split(version, dataset, split_part)
    samples = limit_per_class(samples, max_per_class)
    positions, names = _label_map(version)
    try:
        x, y = load_arrays(samples, version.input_size)
    except DatasetError as exc:
        raise TrainingError(str(exc)) from exc
    model = _load(version)
    predict = predict_with_flips if flips else predict_probabilities
    probabilities = predict(model, x.astype("float32"), batch_size=batch_size)
    y_model = np.asarray([positions[label] for label in y], dtype=np.int64)
    metrics = metrics_from_probabilities(probabilities, y_model, names)
    counts = {name: sum(1 for s in samples if s.class_name == name) for name in dataset.class_names}
    return {
        "model": _model_summary(version),
        "data": {
            "root": str(dataset.root),
            "images": len(samples),
            "counts": {name: count for name, count in counts.items() if count},
            "max_per_class": max_per_class,
            "split_part": split_part,
            "flips": flips,
        },
        "metrics": metrics,
    }


def _load(version):
    try:
        return registry.load_model(version)
    except registry.RegistryError as exc:
        raise TrainingError(str(exc)) from exc


def collect_image_files(paths):
    """Files named directly (any extension) and image files found recursively in named folders.

    Returns (files, problems) where problems are {"path", "error"} for paths that do not exist.
    """
    files, problems, seen = [], [], set()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found = [path]
        else:
            problems.append({"path": str(path), "error": "not found"})
            continue
        for item in found:
            if item not in seen:
                seen.add(item)
                files.append(item)
    return files, problems


def diagnose_paths(paths, version, *, batch_size=32, model=None):
    """Classify image files/folders with exactly the serving preprocessing AND the serving gates.

    Each file goes through ml.images.prepare_image(path, version.input_size) and the model's
    softmax, after the same gates as the portal's worker (training.gates): the smear check (a
    rejected image gets label ``not_a_smear`` and no probabilities), then the OOD score and the
    low-confidence threshold. Returns one dict per file, in order: path, label (class name, or
    None), confidence, probabilities {class: p}, ood_score, flags (list of reasons, empty when not
    flagged), error (None, or why the file could not be read). Unreadable files are reported, not fatal.
    """
    import numpy as np

    from ml.images import ImageError, prepare_image
    from training import gates

    files, problems = collect_image_files(paths)
    names = list(version.class_names or CLASS_NAMES)

    def blank(path, error=None):
        return {
            "path": path,
            "label": None,
            "confidence": None,
            "probabilities": None,
            "ood_score": None,
            "flags": [],
            "error": error,
        }

    rows = [blank(p["path"], p["error"]) for p in problems]
    if not files:
        return rows
    model = model or _load(version)
    with_features = gates.needs_features(version)
    extractor = None
    if with_features:
        from ml import ood

        extractor = ood.feature_model(model)
    pending = []

    def flush():
        if not pending:
            return
        batch = np.stack([array for _, array in pending])
        if extractor is not None:
            from ml import ood

            features, probabilities = ood.predict_features(extractor, batch, batch_size=batch_size)
        else:
            probabilities = registry.predict_prepared(model, batch, batch_size=batch_size)
            features = [None] * len(batch)
        for (row, _), probs, feats in zip(pending, probabilities, features):
            best = int(np.argmax(probs))
            score, flags = gates.assess(version, probs, feats)
            row.update(
                label=names[best],
                confidence=float(probs[best]),
                probabilities={name: float(p) for name, p in zip(names, probs)},
                ood_score=score,
                flags=flags,
            )
        pending.clear()

    for path in files:
        row = blank(str(path))
        rows.append(row)
        try:
            image = prepare_image(path, version.input_size)
        except ImageError as exc:
            row["error"] = str(exc)
            continue
        except OSError as exc:
            row["error"] = f"Cannot read {path}: {exc}"
            continue
        is_smear, reasons = gates.smear_verdict_of(version, path, image, version.input_size)
        if not is_smear:  # as the worker: no subtype for an image that is not a smear
            row.update(label=gates.NOT_A_SMEAR, probabilities={}, flags=[gates.not_a_smear_flag(reasons)])
            continue
        pending.append((row, image))
        if len(pending) >= batch_size:
            flush()
    flush()
    return rows

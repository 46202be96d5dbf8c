"""A registered model's robustness report (what ``manage.py model_report`` prints and saves).

``build_model_report(version, data_dir)`` rebuilds the split recorded with the model
(ModelRecord.split, via ml.splits.from_record) from the images in ``data_dir`` and
measures, on that split's TEST images:

- the model on the original images, on each colour-shifted copy, on colour-normalised copies
  (per-channel statistics matched to a reference fitted on the TRAINING split, once in RGB - the
  baseline's own six numbers - and once in CIELAB) and on grayscale copies
  (ml.robustness), with the drop against the original in points;
- the colour-only baseline (ml.colour_baseline) trained on the same training split, on the
  test images and the normalised test images, for each normalisation; in each, the model must beat
  the baseline's best normalised accuracy by ``required_margin`` points;
- the "not a stained smear" check (ml.smear_check) fitted on the training split, with its
  false-flag rate on the validation (and test) images; its parameters are saved as JSON and, with
  ``attach_smear_check``, stored on the version (ModelVersion.smear_check: serving then uses it);
- the site-shift suite (ml.site_shifts: stain in optical density, white balance, gamma, saturation
  three ways, CIELAB hue, JPEG, defocus, resolution, combinations; written independently of the
  training augmentation) with leave-one-family-out crediting, and the OOD model (ml.ood) fitted on
  the training split and calibrated on the validation split (ml.site_report): the share of plain
  test images flagged and of wrong answers under credited shifts flagged; with ``attach_ood`` the
  OOD model is stored on the version (ModelVersion.ood: serving flags "outside validated conditions");
- single-image CPU latency (``predict_on_batch`` on one image, warm, median of N) and file size.

Everything Keras/numpy lives in ml; this module is the Django glue (registry, settings).
"""

import datetime
import platform
import statistics
import time
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from ml.classes import CLASS_NAMES
from ml.colour_report import DEFAULT_REQUIRED_MARGIN
from training import registry
from training.services import TrainingError, scan

REPORT_FORMAT = 1
REPORT_FILE = "report.json"
REPORT_TEXT_FILE = "report.txt"
SMEAR_CHECK_FILE = "smear_check.json"
DEFAULT_LATENCY_RUNS = 30
LATENCY_WARMUP = 3
DEFAULT_SMEAR_SIZE = 224
SITE_SOURCE_SIZE = 224  # site shifts act at the development images' own resolution


def default_output_dir(version):
    stamp = timezone.now().astimezone(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return Path(settings.VAR_DIR) / "reports" / f"{version.name}-{stamp}"


def _data_root(data_dir):
    """The labelled folder itself, or its original/ sub-folder (the shared data set's layout)."""
    path = Path(data_dir).expanduser()
    if (path / "original").is_dir():
        return path / "original"
    return path


def _label_positions(version):
    names = list(version.class_names or CLASS_NAMES)
    missing = [c for c in CLASS_NAMES if c not in names]
    if missing:
        raise TrainingError(f"Model {version.name} has no output for class(es) {', '.join(missing)}.")
    return [names.index(c) for c in CLASS_NAMES]


def measure_latency(model, image, runs=DEFAULT_LATENCY_RUNS, warmup=LATENCY_WARMUP):
    """Single-image latency of ``model.predict_on_batch`` in milliseconds, after ``warmup`` calls."""
    import numpy as np

    batch = np.asarray(image, dtype="float32")[None]
    for _ in range(warmup):
        np.asarray(model.predict_on_batch(batch))
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        np.asarray(model.predict_on_batch(batch))
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return {
        "runs": len(times),
        "warmup": warmup,
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[min(len(times) - 1, round(0.9 * (len(times) - 1)))], 3),
        "min_ms": round(times[0], 3),
        "method": "model.predict_on_batch on one image (float32), warm, CPU",
    }


def _cpu_description():
    import os

    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores"


def build_model_report(
    version,
    data_dir,
    *,
    output_dir=None,
    batch_size=32,
    latency_runs=DEFAULT_LATENCY_RUNS,
    smear_size=DEFAULT_SMEAR_SIZE,
    smear_quantile=None,
    required_margin=DEFAULT_REQUIRED_MARGIN,
    attach_smear_check=False,
    attach_ood=False,
    site_shifts=True,
    log=None,
):
    """Build the report for ``version`` (ModelVersion) on the images in ``data_dir``; see the module
    docstring. Writes report.json, report.txt and smear_check.json into ``output_dir`` (default
    VAR_DIR/reports/<version>-<UTC time>) and returns the report dict (with "output_dir" and
    "files"). Raises TrainingError for a model without a recorded split, data that does not match
    the record, or an unusable model file. With ``attach_smear_check`` the fitted check is also stored
    on the version (registry.attach_smear_check; ``smear_size`` must be registry.SMEAR_CHECK_SIZE)."""
    import numpy as np

    from ml.artifacts import write_json_atomically
    from ml.colour_report import build_colour_report
    from ml.dataset import DatasetError, load_arrays
    from ml.evaluate import predict_probabilities
    from ml.smear_check import DEFAULT_QUANTILE, SmearCheck
    from ml.splits import from_record

    log = log or (lambda line: None)
    started = time.perf_counter()
    if attach_smear_check and smear_size != registry.SMEAR_CHECK_SIZE:
        raise TrainingError(
            f"A smear check stored on a model version must be fitted at {registry.SMEAR_CHECK_SIZE}px "
            f"(serving checks images at that size), not {smear_size}px."
        )
    record = version.record.split or {}
    if not record.get("splits"):
        raise TrainingError(
            f"Model {version.name} has no recorded split: a report needs the training/validation/"
            "test split it was trained on (models made by `retrain` record one)."
        )
    positions = _label_positions(version)
    root = _data_root(data_dir)
    dataset = scan(root, require_all_classes=False)
    try:
        split = from_record(record, dataset)
    except DatasetError as exc:
        raise TrainingError(str(exc)) from exc
    if not split.test:
        raise TrainingError(f"The split recorded with {version.name} has no test images.")
    if len(split.train) < 20:
        raise TrainingError(
            f"The split recorded with {version.name} has only {len(split.train)} training images; "
            "the baseline and the smear check need at least 20."
        )
    size = int(version.input_size)
    log(
        f"Loading {len(split.train)} train, {len(split.val)} validation and {len(split.test)} test images "
        f"at {size}px from {dataset.root}"
    )
    try:
        x_train, y_train = load_arrays(split.train, size)
        x_val = load_arrays(split.val, size)[0] if split.val else None
        x_test, y_test = load_arrays(split.test, size)
    except DatasetError as exc:
        raise TrainingError(str(exc)) from exc

    try:
        model = registry.load_model(version)
    except registry.RegistryError as exc:
        raise TrainingError(str(exc)) from exc

    def predict_fn(batch):
        probabilities = predict_probabilities(model, np.asarray(batch, dtype="float32"), batch_size=batch_size)
        return probabilities[:, positions]  # columns in CLASS_NAMES order, like the labels

    log("Evaluating the model on the test split and its colour variants, and the colour-only baseline")
    colour = build_colour_report(
        predict_fn, (x_train, y_train), (x_test, y_test), CLASS_NAMES, required_margin=required_margin
    )

    site = None
    if site_shifts or attach_ood:
        site = _site_shift_section(version, model, split, (x_train, y_train), x_val, attach_ood, log)

    log(f"Fitting the smear check on the training split at {smear_size}px")
    if smear_size == size:
        smear_train, smear_val, smear_test = x_train, x_val, x_test
    else:
        smear_train, _ = load_arrays(split.train, smear_size)
        smear_val = load_arrays(split.val, smear_size)[0] if split.val else None
        smear_test, _ = load_arrays(split.test, smear_size)
    check = SmearCheck(quantile=DEFAULT_QUANTILE if smear_quantile is None else smear_quantile).fit(smear_train)
    smear = {
        "image_size": smear_size,
        "threshold": check.threshold,
        "quantile": check.quantile,
        "min_threshold": check.min_threshold,
        "n_fit": check.n_fit,
        "fit_scores": check.fit_scores,
    }
    for name, part, samples in (("val", smear_val, split.val), ("test", smear_test, split.test)):
        if part is None:
            continue
        rate = check.false_flag_rate(part)
        flagged = check.check(part[rate["flagged_indices"]]) if rate["flagged"] else []
        smear[f"false_flags_{name}"] = {
            "n": rate["n"],
            "flagged": rate["flagged"],
            "rate": rate["rate"],
            "examples": [
                {
                    "file": samples[i].relpath,
                    "score": round(result["score"], 3) if np.isfinite(result["score"]) else None,
                    "reasons": result["reasons"],
                }
                for i, result in zip(rate["flagged_indices"][:20], flagged)
            ],
        }

    log("Measuring single-image latency")
    latency = measure_latency(model, x_test[0], runs=latency_runs)
    latency["hardware"] = _cpu_description()
    file_path = registry.model_path(version)

    output_dir = Path(output_dir).expanduser() if output_dir else default_output_dir(version)
    output_dir.mkdir(parents=True, exist_ok=True)
    smear_params = check.to_dict()
    smear_params["fitted_on"] = {
        "model": version.name,
        "data_fingerprint": version.data_fingerprint,
        "split": "train",
        "n": check.n_fit,
    }
    if "false_flags_val" in smear:  # so the file alone says how often it flags real smears
        smear_params["validation"] = {key: smear["false_flags_val"][key] for key in ("n", "flagged", "rate")}
    write_json_atomically(output_dir / SMEAR_CHECK_FILE, smear_params)
    had_smear_check = bool(version.smear_check)
    smear["attached"] = False
    if attach_smear_check:
        try:
            registry.attach_smear_check(version, smear_params)
        except registry.RegistryError as exc:
            raise TrainingError(str(exc)) from exc
        smear["attached"] = True
        log(f"Stored the smear check on model version {version.name}")

    report = {
        "format": REPORT_FORMAT,
        "generated_at": timezone.now().astimezone(datetime.UTC).isoformat(timespec="seconds"),
        "model": {
            "id": version.pk,
            "name": version.name,
            "architecture": version.architecture,
            "sha256": version.sha256,
            "input_size": size,
            "class_names": list(version.class_names),
            "is_active": version.is_active,
            "file_path": str(file_path),
            "file_size_bytes": file_path.stat().st_size,
            "recorded_test_accuracy": version.test_accuracy,
            "had_smear_check": had_smear_check,
        },
        "data": {
            "root": str(dataset.root),
            "split_mode": split.mode,
            "seed": split.seed,
            "block_size": split.block_size,
            "counts": split.counts(),
        },
        **colour,
        "smear_check": smear,
        "site_shifts": site,
        "latency": latency,
        "seconds": None,
        "output_dir": str(output_dir),
        "files": {
            "report": str(output_dir / REPORT_FILE),
            "text": str(output_dir / REPORT_TEXT_FILE),
            "smear_check": str(output_dir / SMEAR_CHECK_FILE),
        },
    }
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_json_atomically(output_dir / REPORT_FILE, report)
    (output_dir / REPORT_TEXT_FILE).write_text(format_report(report) + "\n", encoding="utf-8")
    from training import model_store

    model_store.publish_report(output_dir)  # with S3, a copy under reports/ in the bucket
    return report


SPACE_LABELS = {"rgb": "RGB-normalised", "cielab": "CIELAB-normalised"}


def _site_shift_section(version, model, split, train, x_val, attach_ood, log):
    """The leave-one-family-out table and the OOD model (ml.site_report); features cached under
    VAR_DIR/site-cache by the model's sha256."""
    from ml import site_report
    from ml.dataset import load_arrays
    from training import gates

    if x_val is None or not len(x_val):
        raise TrainingError("The OOD threshold is calibrated on the validation split; this split has none.")
    log("Site shifts: features of the training, validation and shifted test images (cached)")
    x_source, y_test = load_arrays(split.test, SITE_SOURCE_SIZE)
    recorded = ((version.record.metrics or {}).get("training") or {}).get("train_config")
    train_config = recorded or _train_config(version)
    params, summary = site_report.build(
        model,
        train_config,
        {"train": train, "val": (x_val, None), "test": (x_source, y_test)},
        input_size=int(version.input_size),
        confidence_threshold=gates.confidence_threshold(),
        cache_dir=Path(settings.VAR_DIR) / "site-cache",
        cache_key=version.sha256[:16],
        log=log,
    )
    summary["ood"] = {k: v for k, v in params.items() if k != "arrays"}
    summary["ood_attached"] = False
    if attach_ood:
        registry.attach_ood(version, params)
        summary["ood_attached"] = True
        log(f"Stored the OOD model ({params['digest'][:12]}) on model version {version.name}")
    return summary


def _train_config(version):
    """The training configuration of a version: its metadata.json beside the model file."""
    import json

    path = registry.model_path(version).parent / "metadata.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("train_config") or {}
    except (OSError, ValueError):
        return {}


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}%"


def format_report(report):
    """The human-readable report."""
    from ml.robustness import format_robustness_table

    model, data, test = report["model"], report["data"], report["test"]
    counts = {part: sum(c.values()) for part, c in data["counts"].items()}
    active = " [active]" if model["is_active"] else ""
    block = f", block size {data['block_size']}" if data.get("block_size") else ""
    recorded = model.get("recorded_test_accuracy")
    lines = [
        (
            f"Model report: {model['name']} ({model['architecture']}, {model['input_size']}px, "
            f"{model['file_size_bytes'] / 1e6:.2f} MB){active}"
        ),
        (
            f"Data {data['root']}: {data['split_mode']} split (seed {data['seed']}{block}), "
            f"train {counts['train']} / val {counts['val']} / test {counts['test']} images"
        ),
        "",
        (
            f"Test split: accuracy {_pct(test['accuracy'])}, macro-F1 {test['macro_f1']:.4f}, "
            f"loss {test['loss']:.4f}, ECE {test['ece']:.4f}"
            + (f" (recorded at training: {_pct(recorded)})" if recorded is not None else "")
        ),
        "",
        "Augmentation-family colour shifts (test split; the SAME HSV operations the colour augmentation "
        "trains on, so this shows the model learned them, not that it generalises to another site):",
        format_robustness_table(report["robustness"]),
    ]
    worst = report["robustness"].get("worst")
    if worst:
        lines.append(f"Largest accuracy drop: {worst['variant']} ({worst['drop_accuracy_points']:+.1f} points)")

    lines += [
        "",
        (
            "Colour-only baseline (per-channel mean and std of R, G, B; logistic regression), "
            "trained on the training split:"
        ),
    ]
    for space, baseline in report["colour_baselines"].items():
        comparison = report["comparisons"][space]
        verdict = (
            "beats the colour-only baseline"
            if comparison["beats_colour_baseline"]
            else "DOES NOT clearly beat the colour-only baseline"
        )
        label = SPACE_LABELS.get(space, space)
        lines += [
            (
                f"  {label}: baseline on test {_pct(baseline['test']['accuracy'])}, on normalised test "
                f"{_pct(baseline['normalised_test']['accuracy'])}, trained and tested on normalised images "
                f"{_pct(baseline['normalised_train_normalised_test']['accuracy'])} (majority class "
                f"{_pct(baseline['chance'])})"
            ),
            (
                f"    model on {label} test {_pct(comparison['model_normalised_accuracy'])} vs baseline's best "
                f"{_pct(comparison['baseline_best_normalised_accuracy'])}: margin {comparison['margin_points']:+.1f} "
                f"points (required {comparison['required_margin_points']:+.1f}) -> {verdict}"
            ),
        ]
    lines.append("")

    smear = report["smear_check"]
    lines.append(
        f"Smear check (fitted on {smear['n_fit']} training images at {smear['image_size']}px; threshold "
        f"{smear['threshold']:.2f}: the {100 * smear['quantile']:g}th percentile of training scores, "
        f"at least {smear['min_threshold']:g}):"
    )
    for part, label in (("val", "validation"), ("test", "test")):
        rate = smear.get(f"false_flags_{part}")
        if rate:
            lines.append(f"  false flags on {label} images: {rate['flagged']}/{rate['n']} ({rate['rate']:.2%})")
            for example in rate["examples"][:5]:
                lines.append(f"    {example['file']}: {', '.join(example['reasons'])} (score {example['score']})")
    if smear.get("attached"):
        lines.append(f"  stored on model version {model['name']}: serving flags non-smear uploads with it")
    elif model.get("had_smear_check"):
        lines.append(
            f"  model version {model['name']} keeps the smear check stored with it (--attach-smear-check "
            "replaces it with this one)"
        )
    else:
        lines.append(
            f"  model version {model['name']} has no stored smear check: run again with "
            "--attach-smear-check to store this one"
        )

    site = report.get("site_shifts")
    if site:
        from ml.site_shifts import format_table

        ood = site["ood"]
        lines += [
            "",
            format_table(site),
            (
                f"  confidence only (no OOD score): plain flagged {_pct(site['confidence_only']['plain_flagged_rate'])}, "
                f"wrong answers flagged {_pct(site['confidence_only']['wrong_flagged_rate'])}"
            ),
            (
                f"  OOD model: Mahalanobis on {ood['components']} principal components of {ood['dimension']} "
                f"penultimate features, threshold {ood['threshold']:.3f} calibrated on the validation split "
                f"({ood['calibrated_on']['flagged_rate']:.1%} of validation images flagged in all); digest "
                f"{ood['digest'][:12]}"
                + ("; stored on the model version" if site.get("ood_attached") else " (--attach-ood stores it)")
            ),
        ]

    latency = report["latency"]
    lines += [
        "",
        (
            f"Latency: {latency['median_ms']:.1f} ms median, {latency['p90_ms']:.1f} ms p90 per single image "
            f"({latency['method']}, {latency['runs']} runs; {latency['hardware']})"
        ),
        f"Model file: {model['file_path']} ({model['file_size_bytes']:,} bytes)",
        f"Saved: {report['files']['report']}, {report['files']['smear_check']}",
    ]
    return "\n".join(lines)

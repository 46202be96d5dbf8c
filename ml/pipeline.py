"""End-to-end training run: scan -> split -> load -> build/train -> evaluate -> plots -> save.

``run_training`` is the entry point the Django ``retrain`` command and the CLI both call:

    python -m ml.pipeline --data ../shared/data/all-leukemia/original \\
        --arch convnet --output var/runs/convnet-1 --epochs 50 --split grouped

Everything lands in ``output_dir``:

    model.keras          final model (best val_accuracy weights), written atomically
    metadata.json        what the model registry needs (see run_training), written atomically
    split.json           the split record (reused on re-run, so an interrupted run resumes on it)
    smear_check.json     the "not a stained smear" check fitted on the training split at 224 px,
                         with its false-flag rate on the validation split (reused on re-run)
    predictions.json     the model's probabilities for every validation and test image, by file
                         (for ensembles and error analysis of models too large to move)
    colour_report.json   with --colour-report: the model on colour-shifted, colour-normalised and
                         grayscale copies of the test split, against the colour-only baseline
                         (ml.colour_report; what ``manage.py model_report`` measures)
    history.json, train_config.json, checkpoints/, backup/  (see train.py)
    plots/training_curves.png, plots/confusion_matrix_val.png, plots/confusion_matrix_test.png

Re-running the same call after an interruption resumes training at the last finished epoch.
"""

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

from . import colour_normalisation
from .artifacts import (
    read_json,
    save_model_atomically,
    write_json_atomically,
    write_metadata,
)
from .classes import CLASS_NAMES, HUMAN_LABELS
from .dataset import (
    DatasetError,
    fingerprint_samples,
    limit_per_class,
    load_arrays,
    scan_dataset,
)
from .site_shifts import SITE_AUGMENTATION_FAMILIES
from .splits import DEFAULT_BLOCK_SIZE, DEFAULT_FRACTIONS, from_record, make_split

METADATA_FORMAT = 1
MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
SPLIT_FILE = "split.json"
SMEAR_CHECK_FILE = "smear_check.json"
PREDICTIONS_FILE = "predictions.json"
COLOUR_REPORT_FILE = "colour_report.json"
SMEAR_CHECK_SIZE = 224  # the check is used at the size it was fitted at; serving prepares 224 px images
SMEAR_CHECK_MIN_TRAIN = 20  # SmearCheck.fit refuses fewer
SMEAR_CHECK_EXAMPLES = 20  # flagged validation files listed in the parameters


def hardware_description():
    """A short string naming the CPU and any accelerator the active Keras backend sees."""
    import keras

    parts = [f"{platform.machine()} {platform.system()}", f"{os.cpu_count()} CPU cores"]
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            accelerators = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
        elif backend == "torch":
            import torch

            accelerators = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        elif backend == "tensorflow":
            import tensorflow as tf  # only to list devices; no model code uses tf

            accelerators = [d.name for d in tf.config.list_physical_devices("GPU")]
        else:
            accelerators = []
    except Exception:  # noqa: BLE001 - a probe must never fail a training run
        accelerators = []
    parts.append(", ".join(accelerators) if accelerators else "no GPU")
    return "; ".join(parts)


def software_versions():
    import keras
    import numpy

    versions = {
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    backend_module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(versions["backend"])
    if backend_module:
        try:
            versions["backend_version"] = __import__(backend_module).__version__
        except Exception:  # noqa: BLE001, S110 - versions are informative, never fatal
            pass
    return versions


def _resolve_split(dataset, samples, output_dir, split_mode, seed, fractions, block_size, max_per_class, split_record):
    """Use the given record, else the one saved by an interrupted run in output_dir, else make one."""
    saved_path = output_dir / SPLIT_FILE
    if (
        split_record is not None
        and saved_path.exists()
        and read_json(saved_path).get("splits") != split_record.get("splits")
    ):
        raise ValueError(f"{saved_path} holds a different split than the record given: use a new output folder")
    if split_record is None and saved_path.exists():
        saved = read_json(saved_path)
        wanted = {
            "mode": split_mode,
            "seed": seed,
            "fractions": list(map(float, fractions)),
            "block_size": block_size if split_mode == "grouped" else None,
            "max_per_class": max_per_class,
        }
        found = {key: saved.get(key) for key in wanted}
        if found != wanted:
            raise ValueError(
                f"{saved_path} was made with {found}, not {wanted}: use a new output folder "
                "(or pass that split record explicitly)"
            )
        split_record = saved
    if split_record is not None:
        split = from_record(split_record, dataset)
    else:
        split = make_split(samples, split_mode, fractions=fractions, seed=seed, block_size=block_size)
    record = split.to_record()
    record["max_per_class"] = split_record.get("max_per_class") if split_record else max_per_class
    write_json_atomically(saved_path, record)
    return split, record


def _smear_check_provenance(split):
    return {
        "split": "train",
        "n": len(split.train),
        "image_size": SMEAR_CHECK_SIZE,
        "train_fingerprint": fingerprint_samples(split.train),
        "val_fingerprint": fingerprint_samples(split.val),
    }


def fit_smear_check(split, output_dir, *, train_x=None, val_x=None, load_workers=None, log=None):
    """Fit the "not a stained smear" check (ml.smear_check) on the TRAINING images of
    ``split`` at SMEAR_CHECK_SIZE px and measure its false-flag rate on the VALIDATION images (other
    patients under a grouped split: the honest estimate of how often real smears get flagged).

    ``train_x``/``val_x``: the split's images already prepared at SMEAR_CHECK_SIZE (else loaded
    here). The parameters (SmearCheck.to_dict() plus "fitted_on" and "validation") are written to
    ``output_dir/smear_check.json`` and reused by a re-run over the same images. Returns
    (params, validation false-flag rate), or (None, None) when the training split has fewer than
    SMEAR_CHECK_MIN_TRAIN images (tiny smoke runs).
    """
    from .smear_check import FORMAT, SmearCheck

    log = log or (lambda line: None)
    if len(split.train) < SMEAR_CHECK_MIN_TRAIN:
        log(f"Smear check: not fitted ({len(split.train)} training images, it needs {SMEAR_CHECK_MIN_TRAIN}).")
        return None, None
    path = Path(output_dir) / SMEAR_CHECK_FILE
    provenance = _smear_check_provenance(split)
    if path.is_file():
        try:
            saved = read_json(path)
        except (OSError, ValueError):
            saved = {}
        if (
            saved.get("format") == FORMAT
            and saved.get("fitted_on") == provenance
            and isinstance(saved.get("validation"), dict)
        ):
            try:
                SmearCheck.from_dict(saved)  # still loadable with this code's features
            except (KeyError, TypeError, ValueError):
                pass
            else:
                log(f"Smear check: reusing {path}")
                return saved, saved["validation"]["rate"]

    if train_x is None:
        train_x, _ = load_arrays(split.train, SMEAR_CHECK_SIZE, workers=load_workers)
    check = SmearCheck().fit(train_x)
    del train_x
    if not split.val:
        rate = {"n": 0, "flagged": 0, "rate": None, "flagged_indices": []}
    else:
        if val_x is None:
            val_x, _ = load_arrays(split.val, SMEAR_CHECK_SIZE, workers=load_workers)
        rate = check.false_flag_rate(val_x)
    flagged = rate["flagged_indices"][:SMEAR_CHECK_EXAMPLES]
    flagged_results = check.check(val_x[flagged]) if flagged else []
    params = check.to_dict()
    params["fitted_on"] = provenance
    params["validation"] = {
        "n": rate["n"],
        "flagged": rate["flagged"],
        "rate": rate["rate"],
        "examples": [
            {"file": split.val[i].relpath, "reasons": result["reasons"]}
            for i, result in zip(flagged, flagged_results, strict=True)
        ],
    }
    write_json_atomically(path, params)
    if rate["n"]:
        log(
            f"Smear check: fitted on {check.n_fit} training images at {SMEAR_CHECK_SIZE} px; it flags "
            f"{rate['flagged']} of {rate['n']} validation images ({rate['rate']:.1%})."
        )
    return params, rate["rate"]


def run_training(
    data_dir,
    architecture,
    output_dir,
    epochs=50,
    image_size=224,
    split_mode="grouped",
    seed=42,
    batch_size=32,
    augment=True,
    weights_path=None,
    split_record=None,
    progress=True,
    *,
    max_per_class=None,
    learning_rate=None,
    patience=10,
    block_size=DEFAULT_BLOCK_SIZE,
    fractions=DEFAULT_FRACTIONS,
    lr_schedule="cosine",
    augment_strength=1.0,
    load_workers=None,
    normalisation=None,
    colour_report=False,
    time_limit=None,
    augment_grayscale=0.0,
    augment_stain=0.0,
    augment_site=(),
):
    """Train ``architecture`` on the images in ``data_dir`` and save everything in ``output_dir``.

    Args:
        data_dir: folder with one sub-folder per class (Benign/Early/Pre/Pro or Kaggle names).
        architecture: one of architectures.ARCHITECTURE_NAMES.
        output_dir: run folder (created); re-running with the same arguments resumes there.
        epochs, image_size, batch_size, seed, augment, learning_rate, patience, lr_schedule,
        augment_strength, augment_grayscale, augment_stain, augment_site, normalisation: training settings (see train.TrainConfig);
            ``learning_rate`` None: the architecture's default (TrainConfig).
        split_mode: "grouped" (blocks of ``block_size`` consecutive file numbers, approximating
            patients; the honest estimate) or "random" (image level, overstates accuracy).
        fractions: (train, val, test) fractions; test may be 0 (then no test metrics).
        weights_path: optional local ImageNet "notop" weights file for the backbone.
        split_record: a Split.to_record() dict (e.g. another run's metadata["split"]) to reproduce
            that exact split; files must still exist with the same bytes.
        progress: True for Keras progress bars, False for silence, or a Keras verbose int.
        max_per_class: keep only the first N files (by number) of each class - for smoke runs.
        time_limit: wall-clock seconds, from this call's start, by which training must have ended
            (loading the images counts; evaluating and saving come after): the best epoch
            reached is evaluated and saved; metadata says stopped_by_time_limit.
        colour_report: also measure the model against colour on the test split (COLOUR_REPORT_FILE;
            seconds to minutes: ten passes over the test images and two baseline fits).

    Returns the metadata dict also written to metadata.json, plus "output_dir", "model_path" and
    "metadata_path" (absolute). Keys: format, architecture, model_file, sha256, class_names,
    class_labels, input_size, preprocessing, metrics {"val": ..., "test": ...} (see
    evaluate.metrics_from_probabilities), plots {name: path relative to output_dir},
    data_fingerprint, dataset, split, smear_check (the "not a stained smear" check's parameters,
    fitted on the training split at 224 px whatever ``image_size``; None when the training split
    has under 20 images; see fit_smear_check), smear_check_false_flag_rate (share of validation
    images it flags, or None), params, epochs_run, best_epoch, stopped_early, stopped_by_time_limit,
    training_seconds, train_config, versions, hardware, trained_at (UTC ISO 8601).
    Raises DatasetError for unusable data and ValueError for inconsistent arguments.
    """
    # Imported here so that `--help` and argument errors do not wait for a backend import.
    from .architectures import ARCHITECTURES, describe_preprocessing
    from .evaluate import metrics_from_probabilities, predict_probabilities
    from .plots import plot_confusion_matrix, plot_training_curves
    from .train import train_model

    started = time.monotonic()
    if architecture not in ARCHITECTURES:  # fail before scanning and loading thousands of images
        raise ValueError(f"Unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    output_dir = Path(output_dir).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    fractions = tuple(float(f) for f in fractions)

    dataset = scan_dataset(data_dir)
    samples = limit_per_class(dataset.samples, max_per_class)
    split, record = _resolve_split(
        dataset, samples, output_dir, split_mode, seed, fractions, block_size, max_per_class, split_record
    )
    if not split.train or not split.val:
        raise DatasetError(f"Split leaves no training or validation images: {split.counts()}")

    train_arrays = load_arrays(split.train, image_size, workers=load_workers)
    val_arrays = load_arrays(split.val, image_size, workers=load_workers)
    test_arrays = load_arrays(split.test, image_size, workers=load_workers) if split.test else None
    same_size = image_size == SMEAR_CHECK_SIZE
    smear_check, smear_false_flag_rate = fit_smear_check(
        split,
        output_dir,
        train_x=train_arrays[0] if same_size else None,
        val_x=val_arrays[0] if same_size else None,
        load_workers=load_workers,
        log=print if progress else None,
    )

    config = train_config(
        architecture,
        output_dir,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        patience=patience,
        augment=augment,
        augment_strength=augment_strength,
        weights_path=weights_path,
        lr_schedule=lr_schedule,
        normalisation=normalisation,
        augment_grayscale=augment_grayscale,
        augment_stain=augment_stain,
        augment_site=augment_site,
        time_limit_seconds=max(1.0, time_limit - (time.monotonic() - started)) if time_limit else None,
    )
    result = train_model(config, train_arrays, val_arrays, output_dir=output_dir, progress=progress)
    model = result.model

    parts = {"val": (split.val, val_arrays)}
    if test_arrays is not None:
        parts["test"] = (split.test, test_arrays)
    probabilities = {part: predict_probabilities(model, arrays[0], batch_size) for part, (_, arrays) in parts.items()}
    metrics = {
        part: metrics_from_probabilities(probabilities[part], arrays[1], CLASS_NAMES)
        for part, (_, arrays) in parts.items()
    }
    write_json_atomically(
        output_dir / PREDICTIONS_FILE,
        {
            "class_names": list(CLASS_NAMES),
            **{
                part: {
                    "files": [sample.relpath for sample in samples],
                    "labels": [int(v) for v in arrays[1]],
                    "probabilities": [[round(float(p), 6) for p in row] for row in probabilities[part]],
                }
                for part, (samples, arrays) in parts.items()
            },
        },
    )
    if colour_report and test_arrays is not None:
        from .colour_report import build_colour_report

        report = build_colour_report(
            lambda batch: predict_probabilities(model, batch, batch_size),
            train_arrays,
            test_arrays,
            CLASS_NAMES,
            test_probabilities=probabilities["test"],
        )
        write_json_atomically(output_dir / COLOUR_REPORT_FILE, report)

    labels = [HUMAN_LABELS[c] for c in CLASS_NAMES]
    plots = {"training_curves": "plots/training_curves.png"}
    plot_training_curves(
        result.history,
        output_dir / plots["training_curves"],
        title=f"{architecture} ({split.mode} split)",
        best_epoch=result.best_epoch,
    )
    for part, part_metrics in metrics.items():
        plots[f"confusion_matrix_{part}"] = f"plots/confusion_matrix_{part}.png"
        plot_confusion_matrix(
            part_metrics["confusion_matrix"],
            labels,
            output_dir / plots[f"confusion_matrix_{part}"],
            title=f"{architecture} - {part} ({part_metrics['accuracy']:.1%})",
        )

    model_path = output_dir / MODEL_FILE
    sha256 = save_model_atomically(model, model_path)
    used = split.train + split.val + split.test
    metadata = {
        "format": METADATA_FORMAT,
        "architecture": architecture,
        "model_file": MODEL_FILE,
        "sha256": sha256,
        "class_names": list(CLASS_NAMES),
        "class_labels": labels,
        "input_size": image_size,
        "preprocessing": describe_preprocessing(model),
        "metrics": metrics,
        "plots": plots,
        "data_fingerprint": fingerprint_samples(used),
        "dataset": {
            "root": str(dataset.root),
            "fingerprint": dataset.fingerprint(),
            "counts": dataset.counts(),
            "used": len(used),
            "max_per_class": max_per_class,
        },
        "split": record,
        "smear_check": smear_check,
        "smear_check_false_flag_rate": smear_false_flag_rate,
        "params": int(model.count_params()),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "stopped_by_time_limit": result.stopped_by_time_limit,
        "resumed_from_epoch": result.resumed_from_epoch,
        "training_seconds": round(result.training_seconds, 2),
        "train_config": config.to_dict(),
        "versions": software_versions(),
        "hardware": hardware_description(),
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    metadata_path = output_dir / METADATA_FILE
    write_metadata(metadata_path, metadata)
    return {
        **metadata,
        "output_dir": str(output_dir),
        "model_path": str(model_path),
        "metadata_path": str(metadata_path),
    }


def train_config(
    architecture,
    output_dir,
    *,
    image_size=224,
    epochs=50,
    batch_size=32,
    learning_rate=None,
    seed=42,
    patience=10,
    augment=True,
    augment_strength=1.0,
    weights_path=None,
    lr_schedule="cosine",
    normalisation=None,
    augment_grayscale=0.0,
    augment_stain=0.0,
    augment_site=(),
    time_limit_seconds=None,
):
    """The train.TrainConfig that run_training trains with, from its arguments of the same names."""
    from .train import TrainConfig

    return TrainConfig(
        architecture=architecture,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        patience=patience,
        augment=augment,
        augment_strength=augment_strength,
        weights_path=str(weights_path) if weights_path else None,
        lr_schedule=lr_schedule,
        num_classes=len(CLASS_NAMES),
        output_dir=str(output_dir),
        normalisation=normalisation,
        augment_grayscale=augment_grayscale,
        augment_stain=augment_stain,
        augment_site=augment_site,
        time_limit_seconds=time_limit_seconds,
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m ml.pipeline",
        description="Train and evaluate Telediag classifiers (no Django needed).",
    )
    parser.add_argument("--data", required=True, help="folder with Benign/Early/Pre/Pro sub-folders")
    parser.add_argument(
        "--arch",
        nargs="+",
        default=["convnet"],
        help="architecture(s): convnet convnet_bn mobilenetv2 resnet50 vgg19; "
        "with several, each trains in OUTPUT/<arch>",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=224, help="image size in pixels (square)")
    parser.add_argument("--split", choices=("grouped", "random"), default="grouped")
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    parser.add_argument(
        "--fractions", type=float, nargs=3, default=list(DEFAULT_FRACTIONS), metavar=("TRAIN", "VAL", "TEST")
    )
    parser.add_argument("--split-record", help="JSON file: a split record or a metadata.json to reuse")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--learning-rate", type=float, help="Adam's initial learning rate (default: 1e-3; 1e-4 for vgg19)"
    )
    parser.add_argument("--lr-schedule", choices=("cosine", "plateau", "constant"), default="cosine")
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--augment-strength", type=float, default=1.0)
    parser.add_argument(
        "--grayscale-augment",
        type=float,
        default=0.0,
        metavar="P",
        help="probability of turning a training image gray (default 0: never)",
    )
    parser.add_argument(
        "--stain-augment",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="per-image stain-amount jitter in optical density (0.05: 'HED-light'; default 0: off)",
    )
    parser.add_argument(
        "--site-augment",
        nargs="+",
        default=[],
        choices=tuple(SITE_AUGMENTATION_FAMILIES),
        metavar="KIND",
        help=f"add what differs between sites to the augmentation: {', '.join(SITE_AUGMENTATION_FAMILIES)}",
    )
    parser.add_argument(
        "--per-image-colour",
        action="store_true",
        help="standardise each image's R, G, B inside the model (no average colour to learn)",
    )
    parser.add_argument(
        "--lab-colour",
        action="store_true",
        help="standardise each image's CIELAB L, a, b inside the model instead (Reinhard's colour "
        "normalisation: no colour cast or saturation to learn)",
    )
    parser.add_argument(
        "--balance-colour",
        action="store_true",
        help="with --lab-colour: first scale each image's R, G, B to one mean (grey world)",
    )
    parser.add_argument("--weights", help="local ImageNet notop weights (.h5) for the backbone")
    parser.add_argument("--max-per-class", type=int, help="smoke runs: first N images per class")
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="end training by this many seconds after the start (no epoch begun that would "
        "overrun); the best epoch reached is evaluated and saved",
    )
    parser.add_argument(
        "--colour-report",
        action="store_true",
        help=f"also measure the model against colour on the test split ({COLOUR_REPORT_FILE})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch)")
    return parser


def _normalisation(args):
    try:
        return colour_normalisation.from_switches(args.per_image_colour, args.lab_colour, args.balance_colour)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def main(argv=None):
    args = build_parser().parse_args(argv)
    split_record = None
    if args.split_record:
        loaded = read_json(args.split_record)
        split_record = loaded.get("split", loaded)  # accept a metadata.json too
    results = []
    for architecture in args.arch:
        out = Path(args.output) / architecture if len(args.arch) > 1 else Path(args.output)
        try:
            result = run_training(
                args.data,
                architecture,
                out,
                epochs=args.epochs,
                image_size=args.image_size,
                split_mode=args.split,
                seed=args.seed,
                batch_size=args.batch_size,
                augment=not args.no_augment,
                weights_path=args.weights,
                split_record=split_record,
                progress=2 if args.quiet else True,
                max_per_class=args.max_per_class,
                learning_rate=args.learning_rate,
                patience=args.patience,
                block_size=args.block_size,
                fractions=tuple(args.fractions),
                lr_schedule=args.lr_schedule,
                augment_strength=args.augment_strength,
                normalisation=_normalisation(args),
                colour_report=args.colour_report,
                time_limit=args.time_limit,
                augment_grayscale=args.grayscale_augment,
                augment_stain=args.stain_augment,
                augment_site=tuple(args.site_augment),
            )
        except (DatasetError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        results.append(result)
        print(f"{architecture}: model {result['model_path']} sha256 {result['sha256']}")
    from .evaluate import format_comparison_table

    print()
    print(format_comparison_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

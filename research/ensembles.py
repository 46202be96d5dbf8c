"""Registering an ensemble of registered versions as a model version of its own.

``register_ensemble`` checks that the members were trained and tested on the same split (the
recorded file lists must be identical: otherwise one member's test images are another's training
images) and predict the same classes; averages them (ml.ensemble: the ensemble takes the
largest member's input size and scales images down inside for smaller members), evaluates the
average on that split's validation and test images, and registers it like a trained model
(metadata, plots, split, smear check of the first member).
"""

import datetime

from django.conf import settings
from django.utils import timezone

from ml.classes import CLASS_NAMES, HUMAN_LABELS
from training import registry
from training.services import TrainingError, scan

ENSEMBLE_ARCHITECTURE = "ensemble"


def _check_members(versions):
    if len(versions) < 2:
        raise TrainingError("An ensemble needs at least two model versions.")
    if len({v.pk for v in versions}) != len(versions):
        raise TrainingError("Name each model version once.")
    first = versions[0]
    for version in versions[1:]:
        if list(version.class_names) != list(first.class_names):
            raise TrainingError(f"{version.name} and {first.name} predict different classes.")
        if (version.record.split or {}).get("splits") != (first.record.split or {}).get("splits"):
            raise TrainingError(
                f"{version.name} and {first.name} were not trained on the same split, so the "
                "test images of one may be training images of the other: train the members "
                "with the same --split and --seed."
            )
    if not (first.record.split or {}).get("splits"):
        raise TrainingError(f"{first.name} has no recorded split to evaluate the ensemble on.")


def register_ensemble(versions, data_dir, *, name=None, output_dir=None, log=None):
    """Build, evaluate and register the ensemble of ``versions`` (ModelVersion list); returns the
    new ModelVersion. ``data_dir`` holds the images the members' split names."""
    from ml.artifacts import save_model_atomically, write_metadata
    from ml.dataset import DatasetError, fingerprint_samples, load_arrays
    from ml.ensemble import build_ensemble
    from ml.evaluate import evaluate_model
    from ml.pipeline import METADATA_FORMAT, hardware_description, software_versions
    from ml.plots import plot_confusion_matrix
    from ml.splits import from_record

    log = log or (lambda line: None)
    versions = [registry.get_version(v) for v in versions]
    _check_members(versions)
    first = versions[0]
    dataset = scan(data_dir, require_all_classes=False)
    try:
        split = from_record(first.record.split, dataset)
    except DatasetError as exc:
        raise TrainingError(str(exc)) from exc
    try:
        members = [registry.load_model(version) for version in versions]
    except registry.RegistryError as exc:
        raise TrainingError(str(exc)) from exc
    ensemble = build_ensemble(members, name=ENSEMBLE_ARCHITECTURE)
    input_size = max(v.input_size for v in versions)

    log(f"Evaluating the average of {', '.join(v.name for v in versions)} on the recorded split")
    metrics = {}
    for part, samples in (("val", split.val), ("test", split.test)):
        if samples:
            x, y = load_arrays(samples, input_size)
            metrics[part] = evaluate_model(ensemble, x, y, CLASS_NAMES)

    stamp = timezone.now().astimezone(datetime.UTC)
    output_dir = output_dir or settings.VAR_DIR / "training" / f"ensemble-{stamp:%Y%m%d-%H%M%S}"
    output_dir.mkdir(parents=True, exist_ok=True)
    labels = [HUMAN_LABELS[c] for c in CLASS_NAMES]
    plots = {}
    for part, part_metrics in metrics.items():
        plots[f"confusion_matrix_{part}"] = f"plots/confusion_matrix_{part}.png"
        plot_confusion_matrix(
            part_metrics["confusion_matrix"],
            labels,
            output_dir / plots[f"confusion_matrix_{part}"],
            title=f"ensemble - {part} ({part_metrics['accuracy']:.1%})",
        )
    model_path = output_dir / registry.MODEL_FILE
    sha256 = save_model_atomically(ensemble, model_path)
    used = split.train + split.val + split.test
    metadata = {
        "format": METADATA_FORMAT,
        "architecture": ENSEMBLE_ARCHITECTURE,
        "model_file": registry.MODEL_FILE,
        "sha256": sha256,
        "class_names": list(CLASS_NAMES),
        "class_labels": labels,
        "input_size": input_size,
        "preprocessing": {
            "ensemble": "mean of the members' probabilities; each member keeps its own "
            "preprocessing inside its model; members taking smaller images get "
            f"the {input_size} px image scaled down (bilinear, antialiased)",
            "members": {v.name: v.record.preprocessing for v in versions},
        },
        "members": [{"name": v.name, "architecture": v.architecture, "sha256": v.sha256} for v in versions],
        "metrics": metrics,
        "plots": plots,
        "data_fingerprint": fingerprint_samples(used),
        "dataset": {
            "root": str(dataset.root),
            "fingerprint": dataset.fingerprint(),
            "counts": dataset.counts(),
            "used": len(used),
            "max_per_class": first.record.split.get("max_per_class"),
        },
        "split": first.record.split,
        "smear_check": first.smear_check or None,
        "params": int(ensemble.count_params()),
        "epochs_run": 0,
        "training_seconds": 0.0,  # nothing trained
        "versions": software_versions(),
        "hardware": hardware_description(),
        "trained_at": stamp.isoformat(timespec="seconds"),
    }
    write_metadata(output_dir / registry.METADATA_FILE, metadata)
    result = {**metadata, "output_dir": str(output_dir), "model_path": str(model_path)}
    members = ", ".join(v.name for v in versions)
    return registry.register_model(
        result, name=name or f"ensemble-{stamp:%Y%m%d-%H%M%S}", notes=f"Ensemble (mean probabilities) of {members}."
    )

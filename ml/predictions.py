"""Ensembles measured from saved predictions, for models whose files cannot be brought together.

Every training run writes ``predictions.json`` (ml.pipeline): its model's probabilities for
each validation and test image. The mean of several runs' probabilities is what an ensemble of
their models (ml.ensemble) would output, so its metrics can be measured here even when
the members' files stayed on the GPU machine:

    python -m ml.predictions RUN_A/predictions.json RUN_B/predictions.json ...

The runs must share a split (same files, same labels, same classes); a member trained on another
split is refused rather than silently averaged.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .artifacts import read_json
from .evaluate import metrics_from_probabilities

PARTS = ("val", "test")


def load_predictions(path):
    data = read_json(path)
    if "class_names" not in data or not any(part in data for part in PARTS):
        raise ValueError(f"{path} is not a training run's predictions.json")
    return data


def mean_prediction_metrics(predictions):
    """Metrics of the mean probabilities of ``predictions`` (loaded predictions.json dicts), per
    part they all have: {"val": metrics, "test": metrics} (ml.evaluate)."""
    if not predictions:
        raise ValueError("no predictions to combine")
    first = predictions[0]
    for other in predictions[1:]:
        if other["class_names"] != first["class_names"]:
            raise ValueError("the runs' class names differ")
    metrics = {}
    for part in PARTS:
        if not all(part in p for p in predictions):
            continue
        for other in predictions[1:]:
            if other[part]["files"] != first[part]["files"] or other[part]["labels"] != first[part]["labels"]:
                raise ValueError(f"the runs' {part} images differ: they were trained on different splits")
        probabilities = np.mean([np.asarray(p[part]["probabilities"], dtype=np.float64) for p in predictions], axis=0)
        metrics[part] = metrics_from_probabilities(
            probabilities, np.asarray(first[part]["labels"]), first["class_names"]
        )
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ml.predictions", description="Metrics of the mean of several runs' predictions.json."
    )
    parser.add_argument("predictions", nargs="+", help="predictions.json files of runs on one split")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        metrics = mean_prediction_metrics([load_predictions(Path(p)) for p in args.predictions])
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(metrics, indent=1))
        return 0
    for part, m in metrics.items():
        recall = " / ".join(f"{100 * c['recall']:.1f}" for c in m["per_class"].values())
        print(
            f"{part}: accuracy {m['accuracy']:.2%} ({m['n']} images), macro-F1 {m['macro_f1']:.3f}, "
            f"ECE {m['ece']:.3f}, recall {recall}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

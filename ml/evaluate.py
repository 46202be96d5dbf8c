"""Metrics for a classifier: accuracy, loss, per-class precision/recall/F1, confusion matrix, ECE.

``metrics_from_probabilities`` needs no Keras (numpy and scikit-learn's metrics), so serving code and
reports can reuse it on stored predictions. Conventions: rows of the confusion matrix are true
classes, columns are predicted classes; a precision/recall/F1 with a zero denominator is 0
(scikit-learn's zero_division=0); ECE (which scikit-learn lacks) uses 15 equal-width confidence bins
(lo, hi] weighted by bin size.
"""

import numpy as np
from sklearn import metrics as sk_metrics

ECE_BINS = 15
_EPSILON = 1e-7  # same clipping as Keras' cross-entropy


def expected_calibration_error(probabilities, y, bins=ECE_BINS):
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y).astype(np.float64)
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 joins bin 0.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def metrics_from_probabilities(probabilities, y, class_names):
    """All metrics from an (N, K) probability array and N integer labels.

    Returns a JSON-able dict: accuracy, loss, macro_precision, macro_recall, macro_f1,
    weighted_f1, ece, n, per_class {name: precision, recall, f1, support},
    confusion_matrix (list of lists, rows = true), class_names.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(y), num_classes):
        raise ValueError(f"probabilities must be (N, {num_classes}) for N={len(y)}, got {probabilities.shape}")
    if not len(y):
        return _empty_metrics(class_names)
    predicted = probabilities.argmax(axis=1)
    labels = list(range(num_classes))  # every class, even one absent from y and the predictions
    precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
        y, predicted, labels=labels, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k, name in enumerate(class_names)
    }
    true_probability = np.clip(probabilities[np.arange(len(y)), y], _EPSILON, 1.0)
    return {
        "n": len(y),
        "accuracy": float(sk_metrics.accuracy_score(y, predicted)),
        "loss": float(-np.log(true_probability).mean()),  # Keras' clipping, not sklearn's log_loss
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "weighted_f1": float(np.average(f1, weights=support)) if support.sum() else 0.0,
        "ece": expected_calibration_error(probabilities, y),
        "per_class": per_class,
        "confusion_matrix": sk_metrics.confusion_matrix(y, predicted, labels=labels).tolist(),
        "class_names": list(class_names),
    }


def _empty_metrics(class_names):
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    return {
        "n": 0,
        "accuracy": 0.0,
        "loss": 0.0,
        "macro_precision": 0.0,
        "macro_recall": 0.0,
        "macro_f1": 0.0,
        "weighted_f1": 0.0,
        "ece": 0.0,
        "per_class": {name: dict(zero) for name in class_names},
        "confusion_matrix": [[0] * len(class_names) for _ in class_names],
        "class_names": list(class_names),
    }


def flip_views(x):
    """The images, and the same flipped left-right, upside down, and both (batch axis first)."""
    x = np.asarray(x)
    return [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]


def predict_with_flips(model, x, batch_size=64):
    """Test-time augmentation: the mean of the model's probabilities over ``flip_views(x)`` (a smear
    has no up or left, so each view is as valid as the original)."""
    return np.mean([predict_probabilities(model, view, batch_size) for view in flip_views(x)], axis=0)


def predict_probabilities(model, x, batch_size=64):
    """Model probabilities for uint8/float images, in inference mode (no augmentation).

    A set larger than one batch is padded to whole batches and the padding's rows dropped, so the
    model sees one batch shape: under JAX every new shape is compiled again, which took tens of
    seconds per shape for ResNet50 on the GPU machine. A set of one batch or less runs as it is.
    """
    x = np.asarray(x)
    n = len(x)
    if n > batch_size and n % batch_size:
        x = np.concatenate([x, np.zeros((batch_size - n % batch_size, *x.shape[1:]), dtype=x.dtype)])
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)[:n]


def evaluate_model(model, x, y, class_names, batch_size=64):
    """metrics_from_probabilities on the model's predictions for (x, y)."""
    return metrics_from_probabilities(predict_probabilities(model, x, batch_size), y, class_names)


def _row(result):
    """Flatten a run_training result / metadata dict, or accept an already flat row."""
    metrics = result.get("metrics", {}).get("test") or result.get("test") or result
    return {
        "architecture": result.get("architecture", "?"),
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "loss": metrics.get("loss"),
        "ece": metrics.get("ece"),
        "params": result.get("params"),
        "epochs": result.get("epochs_run", result.get("epochs")),
        "time": result.get("training_seconds", result.get("time")),
    }


def format_comparison_table(results):
    """A plain-text table like the study's Table II, one row per trained model.

    Each item is a run_training result (or its metadata.json), whose metrics["test"] is used,
    or a flat dict with keys architecture, accuracy, macro_f1, loss, ece, params, epochs, time.
    """
    header = ("Architecture", "Accuracy", "Macro-F1", "Loss", "ECE", "Params", "Epochs", "Time")
    rows = []
    for result in results:
        row = _row(result)
        rows.append(
            (
                str(row["architecture"]),
                _fmt(row["accuracy"], "{:.2%}"),
                _fmt(row["macro_f1"], "{:.4f}"),
                _fmt(row["loss"], "{:.4f}"),
                _fmt(row["ece"], "{:.4f}"),
                _fmt(row["params"], "{:,}"),
                _fmt(row["epochs"], "{}"),
                _fmt_seconds(row["time"]),
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _fmt(value, pattern):
    return "-" if value is None else pattern.format(value)


def _fmt_seconds(seconds):
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"

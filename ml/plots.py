"""PNG plots of a training run. Uses matplotlib's object API with the Agg canvas (no pyplot, no
display, no global state), so it is safe in worker processes and threads."""

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(figure, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_training_curves(history, path, title=None, best_epoch=None):
    """Accuracy and loss per epoch, train vs validation, side by side. Returns the path."""
    figure = Figure(figsize=(10, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for axis, metric, label in zip(figure.subplots(1, 2), ("accuracy", "loss"), ("Accuracy", "Loss")):
        for key, name, style in ((metric, "train", "-"), (f"val_{metric}", "validation", "--")):
            values = history.get(key)
            if values:
                axis.plot(
                    epochs[: len(values)],
                    [np.nan if v is None else v for v in values],
                    style,
                    marker="o",
                    markersize=3,
                    label=name,
                )
        if best_epoch is not None:
            axis.axvline(best_epoch + 1, color="grey", linewidth=0.8, linestyle=":", label="best epoch")
        axis.set_xlabel("Epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_confusion_matrix(matrix, class_labels, path, title=None, normalise=False):
    """Confusion matrix (rows true, columns predicted) with counts in the cells. Returns the path."""
    matrix = np.asarray(matrix, dtype=np.float64)
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalise else matrix
    size = max(4.5, 1.3 * len(class_labels) + 1.5)
    figure = Figure(figsize=(size, size))
    axis = figure.subplots()
    image = axis.imshow(shown, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_labels))
    axis.set_xticks(ticks, labels=class_labels, rotation=35, ha="right")
    axis.set_yticks(ticks, labels=class_labels)
    axis.set_xlabel("Predicted")
    axis.set_ylabel("True")
    threshold = shown.max() / 2 if shown.size else 0
    for i in range(shown.shape[0]):
        for j in range(shown.shape[1]):
            text = f"{shown[i, j]:.2f}" if normalise else f"{int(matrix[i, j])}"
            axis.text(j, i, text, ha="center", va="center", color="white" if shown[i, j] > threshold else "black")
    if title:
        axis.set_title(title)
    return _save(figure, path)

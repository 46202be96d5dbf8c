from PIL import Image

from ml.plots import plot_confusion_matrix, plot_training_curves


def test_training_curves_png(tmp_path):
    history = {
        "accuracy": [0.3, 0.6, 0.8],
        "val_accuracy": [0.25, 0.5, 0.7],
        "loss": [1.3, 0.9, 0.5],
        "val_loss": [1.4, 1.0, None],
    }
    path = plot_training_curves(history, tmp_path / "plots" / "curves.png", title="t", best_epoch=2)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 400


def test_confusion_matrix_png(tmp_path):
    matrix = [[5, 1, 0, 0], [0, 6, 0, 0], [1, 0, 4, 1], [0, 0, 0, 7]]
    for normalise in (False, True):
        path = plot_confusion_matrix(
            matrix, ["A", "B", "C", "D"], tmp_path / f"cm{normalise}.png", title="test", normalise=normalise
        )
        with Image.open(path) as image:
            assert image.format == "PNG" and image.height > 200

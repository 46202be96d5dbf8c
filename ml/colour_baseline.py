"""The colour-only baseline: how far does an image's average colour alone get you?

Each image is reduced to six numbers, the mean and the standard deviation of its R, G and B
values over its content pixels (padding from ``resize_with_pad`` excluded), and a multinomial
logistic regression (scikit-learn's, fitted by Newton's method with an L2 penalty: deterministic,
no random initialisation) learns the class from them. With ``degree=2`` (the default) the six
numbers are expanded with their pairwise products and squares, so the classifier can draw curved
boundaries in colour space; that is about what a tiny Dense network on the same six numbers does.

In the development data every class's images share a stain, so this baseline scores very high on
unnormalised images. The number that matters is its accuracy on colour-normalised images
(``robustness.normalise_colour``): a classifier we ship must beat the baseline there by a clear
margin, or it has learnt the stain rather than the cell.

``run_colour_baseline`` does the whole comparison on one split: train on the training images, then
evaluate on the test images, on the colour-normalised test images, and (a second fit) train on
normalised training images and evaluate on normalised test images.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from .evaluate import metrics_from_probabilities
from .robustness import ColourReference, as_batch, content_mask, normalise_colour

FEATURE_NAMES = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b")


def colour_features(x, exclude_padding=True):
    """(N, 6) float64: per-channel mean and std of R, G, B (0..255 units) of each image."""
    batch, _ = as_batch(x)
    features = np.empty((len(batch), 6), dtype=np.float64)
    for i, image in enumerate(batch):
        pixels = image[content_mask(image)] if exclude_padding else image.reshape(-1, 3)
        pixels = pixels.astype(np.float64)
        features[i, :3] = pixels.mean(axis=0)
        features[i, 3:] = pixels.std(axis=0)
    return features


@dataclass
class ColourClassifier:
    """Multinomial logistic regression on colour features, with an L2 penalty of ``l2``.

    The features are standardised with the training mean/std, expanded with their squares and
    pairwise products when ``degree`` is 2, and standardised again, so one ``l2`` value suits any
    feature scale. The penalty is on the mean log-loss (scikit-learn's ``C`` is ``1 / (n * l2)``);
    the intercept is not penalised.
    """

    l2: float = 1e-3
    degree: int = 2
    num_classes: int = None
    pipeline: Pipeline = None

    def fit(self, features, y, num_classes=None):
        features = np.asarray(features, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        if self.degree not in (1, 2):
            raise ValueError("degree must be 1 or 2")
        if len(features) != len(y) or not len(y):
            raise ValueError("need as many labels as feature rows, and at least one")
        self.num_classes = int(num_classes or self.num_classes or y.max() + 1)
        steps = [StandardScaler()]
        if self.degree == 2:
            steps += [PolynomialFeatures(degree=2, include_bias=False), StandardScaler()]
        regression = SkLogisticRegression(C=1.0 / (len(y) * self.l2), solver="newton-cholesky", tol=1e-10)
        self.pipeline = make_pipeline(*steps, regression).fit(features, y)
        return self

    def predict_proba(self, features):
        """(N, num_classes) probabilities; a class absent from the training labels gets 0."""
        if self.pipeline is None:
            raise RuntimeError("fit the model first")
        probabilities = np.zeros((len(features), self.num_classes))
        probabilities[:, self.pipeline.classes_] = self.pipeline.predict_proba(np.asarray(features, dtype=np.float64))
        return probabilities


@dataclass
class ColourBaseline:
    """colour_features + ColourClassifier, taking uint8 images directly."""

    degree: int = 2
    l2: float = 1e-3
    exclude_padding: bool = True
    classifier: ColourClassifier = None

    def fit(self, x, y, num_classes=None):
        self.classifier = ColourClassifier(l2=self.l2, degree=self.degree)
        self.classifier.fit(colour_features(x, self.exclude_padding), y, num_classes=num_classes)
        return self

    def predict_proba(self, x):
        return self.classifier.predict_proba(colour_features(x, self.exclude_padding))

    def predict(self, x):
        return self.predict_proba(x).argmax(axis=1)


def _short(metrics):
    return {key: metrics[key] for key in ("n", "accuracy", "macro_f1", "loss", "confusion_matrix")}


def run_colour_baseline(
    x_train,
    y_train,
    x_test,
    y_test,
    class_names,
    reference=None,
    *,
    degree=2,
    l2=1e-3,
    exclude_padding=True,
    x_test_normalised=None,
):
    """Train the colour-only baseline on the training split and evaluate it.

    Args:
        reference: ColourReference (or dict) for the normalised evaluations; None fits one on
            ``x_train`` (the training split, never the test split).
        x_test_normalised: the test images already normalised to ``reference`` (saves recomputing).

    Returns a JSON-able dict:
        test: metrics on the test images (model trained on the original training images),
        normalised_test: the same model on colour-normalised test images,
        normalised_train_normalised_test: a second model trained and tested on normalised images,
        chance: majority-class accuracy of the test split (the floor to compare with),
        best_normalised_accuracy: the better of the two normalised results (the bar a shipped
            model must clear by a margin),
        features, degree, l2, n_train, reference.
    Each metrics entry holds n, accuracy, macro_f1, loss and confusion_matrix.
    """
    if reference is None:
        reference = ColourReference.fit(x_train)
    elif isinstance(reference, dict):
        reference = ColourReference.from_dict(reference)
    num_classes = len(class_names)
    y_train = np.asarray(y_train, dtype=np.int64)
    y_test = np.asarray(y_test, dtype=np.int64)

    features_train = colour_features(x_train, exclude_padding)
    features_test = colour_features(x_test, exclude_padding)
    if x_test_normalised is None:
        x_test_normalised = normalise_colour(x_test, reference)
    features_test_normalised = colour_features(x_test_normalised, exclude_padding)
    features_train_normalised = colour_features(normalise_colour(x_train, reference), exclude_padding)

    model = ColourClassifier(l2=l2, degree=degree).fit(features_train, y_train, num_classes)
    model_normalised = ColourClassifier(l2=l2, degree=degree).fit(features_train_normalised, y_train, num_classes)

    test = metrics_from_probabilities(model.predict_proba(features_test), y_test, class_names)
    normalised = metrics_from_probabilities(model.predict_proba(features_test_normalised), y_test, class_names)
    both = metrics_from_probabilities(model_normalised.predict_proba(features_test_normalised), y_test, class_names)
    counts = np.bincount(y_test, minlength=num_classes)
    return {
        "features": list(FEATURE_NAMES),
        "exclude_padding": exclude_padding,
        "classifier": "multinomial logistic regression (scikit-learn, Newton, L2)",
        "degree": degree,
        "l2": l2,
        "n_train": len(y_train),
        "reference": reference.to_dict(),
        "test": _short(test),
        "normalised_test": _short(normalised),
        "normalised_train_normalised_test": _short(both),
        "chance": float(counts.max() / counts.sum()) if counts.sum() else 0.0,
        "best_normalised_accuracy": max(normalised["accuracy"], both["accuracy"]),
    }

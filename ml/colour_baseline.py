"""The colour-only baseline: how far does an image's average colour alone get you?

Each image is reduced to six numbers, the mean and the standard deviation of its R, G and B
values over its content pixels (padding from ``resize_with_pad`` excluded), and a multinomial
logistic regression (pure numpy, fitted by Newton's method with L2 regularisation: deterministic,
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

from dataclasses import dataclass, field

import numpy as np

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


def _expand(z, degree):
    if degree == 1:
        return z
    pairs = [z[:, i] * z[:, j] for i in range(z.shape[1]) for j in range(i, z.shape[1])]
    return np.column_stack([z, *pairs])


def _softmax_with_reference(logits):
    """Class probabilities from (N, K-1) logits; the last class has logit 0."""
    full = np.concatenate([logits, np.zeros((len(logits), 1))], axis=1)
    full -= full.max(axis=1, keepdims=True)
    exp = np.exp(full)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class LogisticRegression:
    """Multinomial logistic regression (last class as reference), L2 on weights, Newton's method.

    Inputs are standardised with the training mean/std before the (optional) degree-2 expansion,
    and the expanded features standardised again, so one ``l2`` value suits any feature scale.
    """

    l2: float = 1e-3
    degree: int = 2
    max_iter: int = 100
    tol: float = 1e-8
    num_classes: int = None
    params: dict = field(default_factory=dict)

    def _design(self, features):
        z = (np.asarray(features, dtype=np.float64) - self.params["in_mean"]) / self.params["in_std"]
        z = _expand(z, self.degree)
        z = (z - self.params["ex_mean"]) / self.params["ex_std"]
        return np.column_stack([np.ones(len(z)), z])

    def fit(self, features, y, num_classes=None):
        features = np.asarray(features, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        if self.degree not in (1, 2):
            raise ValueError("degree must be 1 or 2")
        if len(features) != len(y) or not len(y):
            raise ValueError("need as many labels as feature rows, and at least one")
        k = int(num_classes or self.num_classes or y.max() + 1)
        self.num_classes = k
        in_mean, in_std = features.mean(axis=0), features.std(axis=0)
        in_std = np.where(in_std > 1e-12, in_std, 1.0)
        expanded = _expand((features - in_mean) / in_std, self.degree)
        ex_mean, ex_std = expanded.mean(axis=0), expanded.std(axis=0)
        ex_std = np.where(ex_std > 1e-12, ex_std, 1.0)
        self.params = {"in_mean": in_mean, "in_std": in_std, "ex_mean": ex_mean, "ex_std": ex_std}
        design = self._design(features)
        n, d = design.shape
        targets = np.eye(k)[y][:, : k - 1]
        penalty = np.full(d, self.l2)
        penalty[0] = 1e-8  # the intercept is (almost) unregularised
        weights = np.zeros((d, k - 1))

        def loss_of(w):
            probabilities = _softmax_with_reference(design @ w)
            nll = -np.log(np.clip(probabilities[np.arange(n), y], 1e-300, None)).mean()
            return nll + 0.5 * float((penalty[:, None] * w * w).sum())

        loss = loss_of(weights)
        for _ in range(self.max_iter):
            probabilities = _softmax_with_reference(design @ weights)[:, : k - 1]
            gradient = design.T @ (probabilities - targets) / n + penalty[:, None] * weights
            # Hessian blocks: X^T diag(p_j (delta_jl - p_l)) X / n, plus the L2 term.
            coupling = probabilities[:, :, None] * (np.eye(k - 1)[None] - probabilities[:, None, :])
            hessian = np.einsum("na,njl,nb->ajbl", design, coupling, design, optimize=True) / n
            hessian = hessian.reshape(d * (k - 1), d * (k - 1))
            hessian += np.diag(np.repeat(penalty, k - 1))
            step = np.linalg.solve(hessian, gradient.reshape(-1)).reshape(d, k - 1)
            scale = 1.0
            while True:  # backtracking line search keeps every step a descent step
                candidate = weights - scale * step
                new_loss = loss_of(candidate)
                if new_loss <= loss or scale < 1e-6:
                    break
                scale *= 0.5
            improvement = loss - new_loss
            weights, loss = candidate, min(loss, new_loss)
            if improvement < self.tol:
                break
        self.params["weights"] = weights
        return self

    def predict_proba(self, features):
        if "weights" not in self.params:
            raise RuntimeError("fit the model first")
        return _softmax_with_reference(self._design(features) @ self.params["weights"])

    def to_dict(self):
        return {"l2": self.l2, "degree": self.degree, "num_classes": self.num_classes,
                "params": {key: np.asarray(value).tolist() for key, value in self.params.items()}}

    @classmethod
    def from_dict(cls, data):
        model = cls(l2=data["l2"], degree=data["degree"], num_classes=data["num_classes"])
        model.params = {key: np.asarray(value, dtype=np.float64) for key, value in data["params"].items()}
        return model


@dataclass
class ColourBaseline:
    """colour_features + LogisticRegression, taking uint8 images directly."""

    degree: int = 2
    l2: float = 1e-3
    exclude_padding: bool = True
    classifier: LogisticRegression = None

    def fit(self, x, y, num_classes=None):
        self.classifier = LogisticRegression(l2=self.l2, degree=self.degree)
        self.classifier.fit(colour_features(x, self.exclude_padding), y, num_classes=num_classes)
        return self

    def predict_proba(self, x):
        return self.classifier.predict_proba(colour_features(x, self.exclude_padding))

    def predict(self, x):
        return self.predict_proba(x).argmax(axis=1)

    def to_dict(self):
        return {"features": list(FEATURE_NAMES), "exclude_padding": self.exclude_padding,
                "classifier": self.classifier.to_dict() if self.classifier else None}

    @classmethod
    def from_dict(cls, data):
        classifier = LogisticRegression.from_dict(data["classifier"]) if data.get("classifier") else None
        return cls(degree=classifier.degree if classifier else 2, l2=classifier.l2 if classifier else 1e-3,
                   exclude_padding=data.get("exclude_padding", True), classifier=classifier)


def _short(metrics):
    return {key: metrics[key] for key in ("n", "accuracy", "macro_f1", "loss", "confusion_matrix")}


def run_colour_baseline(x_train, y_train, x_test, y_test, class_names, reference=None, *, degree=2, l2=1e-3,
                        exclude_padding=True, x_test_normalised=None):
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

    model = LogisticRegression(l2=l2, degree=degree).fit(features_train, y_train, num_classes)
    model_normalised = LogisticRegression(l2=l2, degree=degree).fit(features_train_normalised, y_train, num_classes)

    test = metrics_from_probabilities(model.predict_proba(features_test), y_test, class_names)
    normalised = metrics_from_probabilities(model.predict_proba(features_test_normalised), y_test, class_names)
    both = metrics_from_probabilities(model_normalised.predict_proba(features_test_normalised), y_test,
                                      class_names)
    counts = np.bincount(y_test, minlength=num_classes)
    return {
        "features": list(FEATURE_NAMES),
        "exclude_padding": exclude_padding,
        "classifier": "multinomial logistic regression (numpy, Newton, L2)",
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

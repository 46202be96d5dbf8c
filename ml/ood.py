"""Out-of-distribution score: how far an image's penultimate features are from the training split.

The classifier answers one of its classes for anything; an image from a lab, lamp or camera unlike
the training lab's can be answered confidently and wrongly. The score here is the Mahalanobis
distance (Lee et al., 2018) of the image's penultimate features (the input of the softmax layer)
to the nearest class mean, with one covariance shared by the classes, all fitted on the TRAINING
split. To keep the stored parameters small (they travel in metadata.json and the database) the
features are first projected on their top principal components (fitted on the training features);
the distance is measured in that space, plus the part of the feature vector the components do not
explain (its squared residual, scaled by the mean residual of the training features), so a shift
that moves features off the training subspace still counts:

    score = min_c (z - mu_c)^T S^-1 (z - mu_c) / k  +  |f - mean - P^T z|^2 / mean_train_residual^2 / k

where f is the feature vector, z = P (f - mean) its k components. Around 1 for training images;
larger is further away. The threshold that flags "outside validated conditions" is calibrated on
held-out data (``calibrate``), never on the test images it is reported on.

Arrays are stored as base64 float32 with their shapes; ``digest`` names the exact parameters.
"""

import base64
import hashlib
import json

import numpy as np

FORMAT = 1
KIND = "telediag.ood.mahalanobis"
DEFAULT_COMPONENTS = 32
RIDGE = 1e-3  # added to the covariance's diagonal (relative to its mean variance): keeps it invertible


def feature_model(model):
    """A Keras model giving (penultimate features, probabilities) in one pass."""
    import keras

    head = model.layers[-1]
    return keras.Model(model.inputs, [head.input, model.outputs[0]])


def predict_features(model_or_features, x, batch_size=64):
    """(features (N, D) float64, probabilities (N, K) float64) for prepared uint8 images ``x``."""
    extractor = model_or_features
    if len(extractor.outputs) != 2:
        extractor = feature_model(extractor)
    features, probabilities = [], []
    x = np.asarray(x)
    for start in range(0, len(x), batch_size):
        f, p = extractor.predict_on_batch(x[start : start + batch_size].astype(np.float32))
        features.append(np.asarray(f, dtype=np.float64))
        probabilities.append(np.asarray(p, dtype=np.float64))
    if not features:
        return np.zeros((0, int(extractor.outputs[0].shape[-1]))), np.zeros((0, int(extractor.outputs[1].shape[-1])))
    return np.concatenate(features), np.concatenate(probabilities)


def _encode(array):
    array = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(array.shape), "float32_base64": base64.b64encode(array.tobytes()).decode("ascii")}


def _decode(data):
    raw = base64.b64decode(data["float32_base64"])
    return np.frombuffer(raw, dtype="<f4").reshape(data["shape"]).astype(np.float64)


class MahalanobisOOD:
    def __init__(self, mean, components, class_means, precision, residual_scale, threshold=None, info=None):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.components = np.asarray(components, dtype=np.float64)  # (k, D)
        self.class_means = np.asarray(class_means, dtype=np.float64)  # (C, k)
        self.precision = np.asarray(precision, dtype=np.float64)  # (k, k)
        self.residual_scale = float(residual_scale)
        self.threshold = None if threshold is None else float(threshold)
        self.info = dict(info or {})

    @property
    def k(self):
        return int(self.components.shape[0])

    @property
    def dimension(self):
        return int(self.components.shape[1])

    @classmethod
    def fit(cls, features, labels, n_components=DEFAULT_COMPONENTS):
        """Fit on the TRAINING split's penultimate features (N, D) and integer labels (N,)."""
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels)
        if features.ndim != 2 or len(features) != len(labels) or len(features) < 2:
            raise ValueError("need (N, D) features and N labels, N >= 2")
        mean = features.mean(axis=0)
        centred = features - mean
        k = int(max(1, min(n_components, features.shape[1], len(features) - 1)))
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        components = vt[:k]
        z = centred @ components.T
        classes = np.unique(labels)
        class_means = np.zeros((int(classes.max()) + 1, k))
        within = np.zeros_like(z)
        for c in classes:
            rows = labels == c
            class_means[c] = z[rows].mean(axis=0)
            within[rows] = z[rows] - class_means[c]
        covariance = within.T @ within / max(1, len(z) - len(classes))
        covariance += np.eye(k) * RIDGE * float(np.mean(np.diag(covariance)) or 1.0)
        residual = centred - z @ components
        residual_scale = float(np.sqrt(np.mean(np.sum(residual**2, axis=1)))) or 1.0
        detector = cls(mean, components, class_means, np.linalg.inv(covariance), residual_scale)
        detector.info = {"n_fit": int(len(features)), "classes_fitted": [int(c) for c in classes]}
        fitted = detector.score(features)
        detector.info["fit_scores"] = {f"q{q:g}": float(np.quantile(fitted, q / 100)) for q in (50, 90, 99, 100)}
        return detector

    def score(self, features):
        """OOD scores (N,) for penultimate features (N, D) (or one (D,) vector: a float)."""
        features = np.asarray(features, dtype=np.float64)
        single = features.ndim == 1
        features = np.atleast_2d(features)
        if features.shape[1] != self.dimension:
            raise ValueError(f"features have {features.shape[1]} dimensions, the OOD model {self.dimension}")
        centred = features - self.mean
        z = centred @ self.components.T
        distances = []
        for mu in self.class_means:
            d = z - mu
            distances.append(np.einsum("ij,jk,ik->i", d, self.precision, d))
        mahalanobis = np.min(np.stack(distances, axis=1), axis=1)
        residual = np.sum((centred - z @ self.components) ** 2, axis=1) / self.residual_scale**2
        scores = (mahalanobis + residual) / self.k
        return float(scores[0]) if single else scores

    def calibrate(self, held_out_scores, quantile):
        """Set the threshold to the ``quantile`` of scores of held-out (not test) images."""
        self.threshold = float(np.quantile(np.asarray(held_out_scores, dtype=np.float64), quantile))
        return self.threshold

    def is_outside(self, scores):
        if self.threshold is None:
            return np.zeros(np.shape(scores), dtype=bool)
        return np.asarray(scores) > self.threshold

    def to_dict(self):
        params = {
            "format": FORMAT,
            "kind": KIND,
            "components": self.k,
            "dimension": self.dimension,
            "threshold": self.threshold,
            "residual_scale": self.residual_scale,
            "arrays": {
                "mean": _encode(self.mean),
                "components": _encode(self.components),
                "class_means": _encode(self.class_means),
                "precision": _encode(self.precision),
            },
            **{k: v for k, v in self.info.items() if k not in ("digest",)},
        }
        params["digest"] = digest(params)
        return params

    @classmethod
    def from_dict(cls, params):
        if params.get("kind") != KIND:
            raise ValueError(f"not OOD parameters (kind {params.get('kind')!r})")
        arrays = params["arrays"]
        info = {
            k: v
            for k, v in params.items()
            if k not in ("format", "kind", "components", "dimension", "threshold", "residual_scale", "arrays")
        }
        return cls(
            _decode(arrays["mean"]),
            _decode(arrays["components"]),
            _decode(arrays["class_means"]),
            _decode(arrays["precision"]),
            params["residual_scale"],
            threshold=params.get("threshold"),
            info=info,
        )


def digest(params):
    """sha256 of the parameters (without their own digest), canonical JSON."""
    body = {k: v for k, v in params.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

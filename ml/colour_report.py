"""How much a trained model leans on colour, on one split's test images (no Django).

``build_colour_report`` runs the model on the test images and their colour variants
(ml.robustness: shifts, RGB and CIELAB normalisation to a reference fitted on the
training split, grayscale), trains the colour-only baseline (ml.colour_baseline) on the
same training split, and compares the two on normalised images: a model we ship must beat the
baseline's best normalised accuracy by ``required_margin`` points in each normalisation.

``manage.py model_report`` (research.reports) and ``python -m ml.pipeline --colour-report``
both call it, so a run on the GPU machine, whose model may be too large to bring back, reports
the same numbers as a report built here from a registered model.
"""

from .colour_baseline import run_colour_baseline
from .evaluate import metrics_from_probabilities
from .robustness import NORMALISATION_SPACES, ColourReference, evaluate_robustness, normalised_variant_name

DEFAULT_REQUIRED_MARGIN = 10.0  # points of accuracy over the colour-only baseline on normalised images


def compare_with_baseline(test_metrics, robustness, baseline, variant, required_margin):
    """The model against the colour-only baseline on one normalisation's images."""
    normalised_accuracy = robustness["variants"][variant]["accuracy"]
    bar = baseline["best_normalised_accuracy"]
    margin = round(100.0 * (normalised_accuracy - bar), 4)
    return {
        "variant": variant,
        "model_test_accuracy": test_metrics["accuracy"],
        "baseline_test_accuracy": baseline["test"]["accuracy"],
        "model_normalised_accuracy": normalised_accuracy,
        "baseline_best_normalised_accuracy": bar,
        "margin_points": margin,
        "required_margin_points": float(required_margin),
        "beats_colour_baseline": margin >= required_margin,
    }


def build_colour_report(
    predict_fn,
    train_arrays,
    test_arrays,
    class_names,
    *,
    required_margin=DEFAULT_REQUIRED_MARGIN,
    test_probabilities=None,
):
    """The model (``predict_fn``: uint8 batch -> probabilities, columns in ``class_names`` order)
    against colour, on ``test_arrays`` (x uint8, y int), with references and baselines fitted on
    ``train_arrays``. ``test_probabilities``: ``predict_fn`` of the test images, when the caller
    already has them (the model then runs once on the plain test images, not twice).

    Returns a JSON-able dict: test (metrics on the plain test images), robustness
    (evaluate_robustness), colour_baselines {space: run_colour_baseline}, comparisons {space:
    compare_with_baseline} and beats_colour_baseline (every normalisation's margin met).
    """
    x_train, y_train = train_arrays
    x_test, y_test = test_arrays
    references = {space: ColourReference.fit(x_train, space) for space in NORMALISATION_SPACES}
    if test_probabilities is None:
        test_probabilities = predict_fn(x_test)
    test_metrics = metrics_from_probabilities(test_probabilities, y_test, class_names)
    robustness = evaluate_robustness(
        predict_fn, x_test, y_test, class_names, list(references.values()), base_probabilities=test_probabilities
    )
    baselines = {
        space: run_colour_baseline(x_train, y_train, x_test, y_test, class_names, reference)
        for space, reference in references.items()
    }
    comparisons = {
        space: compare_with_baseline(
            test_metrics, robustness, baselines[space], normalised_variant_name(reference), required_margin
        )
        for space, reference in references.items()
    }
    return {
        "test": test_metrics,
        "robustness": robustness,
        "colour_baselines": baselines,
        "comparisons": comparisons,
        "beats_colour_baseline": all(c["beats_colour_baseline"] for c in comparisons.values()),
    }

import pytest

from inference.aggregation import aggregate

CLASSES = ["benign", "early_pre_b", "pre_b", "pro_b"]


def p(benign, early, pre, pro, smear=None):
    return {"smear": smear, "probabilities": dict(zip(CLASSES, (benign, early, pre, pro)))}


def test_mean_of_probabilities_and_per_image_results_kept():
    result = aggregate([p(0.1, 0.1, 0.7, 0.1, smear=1), p(0.2, 0.1, 0.6, 0.1, smear=2)], threshold=0.6)
    assert result.label == "pre_b"
    assert result.probabilities["pre_b"] == pytest.approx(0.65)
    assert result.probabilities["benign"] == pytest.approx(0.15)
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert list(result.probabilities) == CLASSES
    assert [image["smear"] for image in result.per_image] == [1, 2]
    assert [image["label"] for image in result.per_image] == ["pre_b", "pre_b"]
    assert result.per_image[0]["top_probability"] == pytest.approx(0.7)
    assert result.attention is False and result.reasons == []
    assert result.analysed == 2


def test_disagreeing_images_are_flagged_even_when_confident_on_average():
    result = aggregate([p(0.9, 0.0, 0.1, 0.0), p(0.9, 0.0, 0.1, 0.0), p(0.3, 0.0, 0.7, 0.0)], threshold=0.6)
    assert result.label == "benign"
    assert result.top_probability == pytest.approx(0.7)
    assert result.attention is True
    assert any("disagree" in reason for reason in result.reasons)


def test_low_confidence_is_flagged():
    result = aggregate([p(0.4, 0.3, 0.2, 0.1)], threshold=0.6)
    assert result.label == "benign"
    assert result.attention is True
    assert any("below 60%" in reason for reason in result.reasons)


def test_threshold_is_a_strict_lower_bound():
    assert aggregate([p(0.6, 0.2, 0.1, 0.1)], threshold=0.6).attention is False
    assert aggregate([p(0.6, 0.2, 0.1, 0.1)], threshold=0.61).attention is True


def test_failed_images_flag_the_case_and_no_prediction_gives_no_label():
    partial = aggregate([p(0.9, 0.05, 0.05, 0.0)], threshold=0.6, failed=1)
    assert partial.label == "benign" and partial.attention is True
    assert "1 of 2 images could not be analysed." in partial.reasons
    empty = aggregate([], threshold=0.6)
    assert empty.label is None and empty.attention is False and empty.probabilities == {}
    assert aggregate([], threshold=0.6, failed=2).attention is True


def test_class_order_and_missing_classes():
    result = aggregate(
        [{"probabilities": {"pro_b": 0.8, "benign": 0.2}}],
        threshold=0.5,
        class_names=CLASSES,
    )
    assert list(result.probabilities) == CLASSES
    assert result.probabilities["pre_b"] == 0.0
    assert result.label == "pro_b"


def test_ties_go_to_the_first_class_and_result_serialises():
    result = aggregate([p(0.5, 0.5, 0.0, 0.0)], threshold=0.4)
    assert result.label == "benign"
    data = result.as_dict()
    assert data["label"] == "benign" and data["per_image"][0]["label"] == "benign"
    assert set(data) >= {"label", "probabilities", "top_probability", "attention", "reasons", "per_image"}


def _image(smear, label, top):
    rest = (1 - top) / 3
    names = ["benign", "early_pre_b", "pre_b", "pro_b"]
    return {"smear": smear, "probabilities": {n: (top if n == label else rest) for n in names}}


def test_three_images_three_labels_is_no_consensus():
    from inference.aggregation import NO_CONSENSUS_TEXT, aggregate

    result = aggregate([_image(1, "benign", 0.7), _image(2, "pre_b", 0.7), _image(3, "pro_b", 0.7)], threshold=0.2)
    assert result.label is None and not result.consensus and result.leading_label == "benign"
    assert result.attention and result.reasons[0].startswith(NO_CONSENSUS_TEXT)
    assert result.as_dict()["consensus"] is False


def test_a_tie_of_two_is_no_consensus_and_a_clear_majority_keeps_its_label():
    from inference.aggregation import aggregate

    assert not aggregate([_image(1, "benign", 0.9), _image(2, "pre_b", 0.9)], threshold=0.5).consensus
    clear = aggregate([_image(1, "pre_b", 0.95), _image(2, "pre_b", 0.95), _image(3, "benign", 0.6)], threshold=0.5)
    assert clear.consensus and clear.label == "pre_b" and any("disagree" in r for r in clear.reasons)
    # a 2-1 majority whose mean is nearly tied is no consensus either
    close = aggregate([_image(1, "pre_b", 0.5), _image(2, "pre_b", 0.5), _image(3, "benign", 0.95)], threshold=0.1)
    assert not close.consensus and close.label is None
    agree = aggregate([_image(1, "pro_b", 0.8), _image(2, "pro_b", 0.9)], threshold=0.5)
    assert agree.consensus and agree.label == "pro_b"


def test_flagged_images_are_named_in_the_case_reasons():
    from inference.aggregation import aggregate

    item = {**_image(1, "pro_b", 0.9), "flags": ["outside validated conditions"]}
    result = aggregate([item, _image(2, "pro_b", 0.9)], threshold=0.5)
    assert result.attention and any(
        "1 of 2 analysed images flagged: outside validated conditions" in r for r in result.reasons
    )

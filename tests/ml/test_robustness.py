"""Colour shifts, colour normalisation, grayscale and the robustness evaluation (no Keras, no Django)."""

import json

import numpy as np
import pytest

from ml import robustness as rb
from ml.images import prepare_image

from .synthetic import CLASS_COLOURS, make_cell_image

NAMES = ("a", "b", "c", "d")


def coloured_set(per_class=4, size=32):
    """Images of the four synthetic class colours (a cell disc on a tinted background) and labels."""
    images, labels = [], []
    for label, colour in enumerate(CLASS_COLOURS.values()):
        for i in range(per_class):
            images.append(np.asarray(make_cell_image(colour, size=size, seed=100 * label + i)))
            labels.append(label)
    return np.stack(images), np.array(labels)


def pixel(rgb):
    return np.array(rgb, dtype=np.uint8).reshape(1, 1, 3)


def test_brightness_multiplies_and_clips():
    image = np.array([[[100, 200, 240], [0, 20, 255]]], dtype=np.uint8)
    assert rb.adjust_brightness(image, 0.85).tolist() == [[[85, 170, 204], [0, 17, 217]]]
    assert rb.adjust_brightness(image, 1.15).tolist() == [[[115, 230, 255], [0, 23, 255]]]


def test_hue_rotation_in_hsv():
    red = pixel((255, 0, 0))
    plus = rb.rotate_hue(red, 10)[0, 0].astype(int)
    minus = rb.rotate_hue(red, -10)[0, 0].astype(int)
    # Hue 10 degrees at full saturation and value: G = 255 * 10 / 60 = 42.5.
    assert plus[0] == 255 and plus[2] == 0 and 42 <= plus[1] <= 43
    assert minus[0] == 255 and minus[1] == 0 and 42 <= minus[2] <= 43
    grey = pixel((120, 120, 120))
    assert rb.rotate_hue(grey, 10).tolist() == grey.tolist()  # no hue to rotate


def test_hue_rotation_round_trips():
    x, _ = coloured_set(per_class=1)
    back = rb.rotate_hue(rb.rotate_hue(x, 10), -10)
    assert np.abs(back.astype(int) - x).max() <= 2


def test_saturation_scaling():
    # (200, 100, 100): V = 200, S = 0.5; S x 0.7 = 0.35 -> min channel 200 * 0.65 = 130.
    assert rb.scale_saturation(pixel((200, 100, 100)), 0.7)[0, 0].tolist() == [200, 130, 130]
    # S x 1.3 = 0.65 -> min channel 200 * 0.35 = 70; S is clipped at 1.
    assert rb.scale_saturation(pixel((200, 100, 100)), 1.3)[0, 0].tolist() == [200, 70, 70]
    assert rb.scale_saturation(pixel((200, 100, 100)), 3.0)[0, 0].tolist() == [200, 0, 0]
    assert rb.scale_saturation(pixel((90, 90, 90)), 1.3).tolist() == pixel((90, 90, 90)).tolist()


def test_grayscale_is_bt601_luma_in_three_channels():
    image = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    grey = rb.to_grayscale(image)
    assert grey.shape == image.shape and grey.dtype == np.uint8
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert grey[0, :, 0].tolist() == [76, 150, 29, 18]  # rint(0.299*R + 0.587*G + 0.114*B)


@pytest.mark.parametrize("name", list(rb.variant_transforms(rb.ColourReference((80.0, 5.0, -10.0), (10.0, 4.0, 6.0)))))
def test_every_variant_is_deterministic_and_keeps_shape(name):
    reference = rb.ColourReference((80.0, 5.0, -10.0), (10.0, 4.0, 6.0))
    transform = rb.variant_transforms(reference)[name]
    x, _ = coloured_set(per_class=1)
    first, second = transform(x), transform(x.copy())
    assert first.dtype == np.uint8 and first.shape == x.shape
    assert np.array_equal(first, second)
    assert np.array_equal(transform(x[0]), first[0])  # one image or a batch: same result
    if name != "grayscale":
        assert not np.array_equal(first, x)


def test_content_mask_excludes_the_padding_of_resize_with_pad():
    wide = np.asarray(make_cell_image((200, 150, 210), size=64, seed=3))[:32]  # 64 wide, 32 high
    prepared = prepare_image(wide, 64)
    mask = rb.content_mask(prepared)
    assert mask.shape == (64, 64)
    assert not mask[:16].any() and not mask[48:].any() and mask[16:48].all()
    assert rb.content_mask(np.zeros((8, 8, 3), np.uint8)).all()  # an all-black frame keeps its pixels
    inner_black = np.full((8, 8, 3), 200, np.uint8)
    inner_black[3] = 0
    assert rb.content_mask(inner_black).all()  # a dark line inside the picture is content


def test_colour_reference_and_normalisation_match_the_statistics():
    x, _ = coloured_set(per_class=3)
    reference = rb.ColourReference.fit(x)
    assert reference.n_images == len(x) and reference.space == "cielab"
    means = np.array([rb.lab_statistics(image)[0] for image in x])
    assert np.allclose(reference.mean, means.mean(axis=0))

    normalised = rb.normalise_colour(x, reference)
    for image in normalised:
        mean, std = rb.lab_statistics(image)
        assert np.allclose(mean, reference.mean, atol=1.5)
        assert np.allclose(std, reference.std, atol=1.5)
    # Red, green, blue and yellow images all end up with about the same average colour.
    rgb_means = normalised.reshape(len(x), -1, 3).mean(axis=1)
    assert rgb_means.std(axis=0).max() < 6 < x.reshape(len(x), -1, 3).mean(axis=1).std(axis=0).max()


def test_normalisation_leaves_padding_black_and_uses_only_content():
    x, _ = coloured_set(per_class=1, size=32)
    reference = rb.ColourReference.fit(x)
    content = np.asarray(make_cell_image((90, 60, 160), size=32, seed=9))
    padded = np.zeros((48, 32, 3), np.uint8)
    padded[8:40] = content
    result = rb.normalise_colour(padded, reference)
    assert not result[:8].any() and not result[40:].any()
    assert np.array_equal(result[8:40], rb.normalise_colour(content, reference))


def test_flat_frame_normalisation_does_not_divide_by_zero():
    reference = rb.ColourReference((80.0, 5.0, -10.0), (10.0, 4.0, 6.0))
    flat = np.full((16, 16, 3), 128, np.uint8)
    result = rb.normalise_colour(flat, reference)
    assert result.dtype == np.uint8 and len(np.unique(result.reshape(-1, 3), axis=0)) == 1


def test_reference_serialises_to_json():
    x, _ = coloured_set(per_class=1)
    reference = rb.ColourReference.fit(x)
    again = rb.ColourReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert again == reference
    assert np.array_equal(rb.normalise_colour(x, again), rb.normalise_colour(x, reference.to_dict()))
    with pytest.raises(ValueError, match="space"):
        rb.ColourReference.from_dict({**reference.to_dict(), "space": "hsv"})
    rgb = rb.ColourReference.fit(x, "rgb")
    assert rb.ColourReference.from_dict(json.loads(json.dumps(rgb.to_dict()))) == rgb


def test_rgb_normalisation_takes_away_the_baselines_six_numbers():
    from ml.colour_baseline import colour_features

    x, _ = coloured_set(per_class=3)
    reference = rb.ColourReference.fit(x, "rgb")
    assert reference.space == "rgb"
    assert np.allclose(reference.mean, colour_features(x)[:, :3].mean(axis=0))
    normalised = rb.normalise_colour(x, reference)
    features = colour_features(normalised)
    # Every image now has (up to rounding and clipping) the reference's mean and std per channel...
    assert np.allclose(features[:, :3], reference.mean, atol=1.0)
    assert np.allclose(features[:, 3:], reference.std, atol=1.0)
    # ...while the pattern inside each image is kept: pixel order per channel is unchanged.
    for original, matched in zip(x, normalised):
        for channel in range(3):
            a, b = original[..., channel].ravel(), matched[..., channel].ravel()
            order = np.argsort(a, kind="stable")
            assert (np.diff(b[order].astype(int)) >= 0).all()


def test_several_references_give_one_normalised_variant_each():
    x, y = coloured_set(per_class=2)
    references = [rb.ColourReference.fit(x, "rgb"), rb.ColourReference.fit(x)]
    result = rb.evaluate_robustness(colour_predictor, x, y, NAMES, references)
    assert {"colour_normalised_rgb", "colour_normalised"} <= set(result["variants"])
    assert result["variants"]["colour_normalised_rgb"]["accuracy"] <= 0.5  # the colour reader is lost
    assert [r["space"] for r in result["references"]] == ["rgb", "cielab"] and result["reference"] is None


def colour_predictor(x):
    """A stain-reader: the class whose synthetic colour is nearest to the image's mean colour."""
    colours = np.array(list(CLASS_COLOURS.values()), dtype=np.float64)
    means = np.asarray(x, dtype=np.float64).reshape(len(x), -1, 3).mean(axis=1)
    distances = ((means[:, None, :] - colours[None]) ** 2).sum(axis=-1)
    return np.eye(4)[distances.argmin(axis=1)]


def test_evaluate_robustness_exposes_a_colour_reader():
    x, y = coloured_set(per_class=4)
    reference = rb.ColourReference.fit(x)
    result = rb.evaluate_robustness(colour_predictor, x, y, NAMES, reference)

    assert list(result["variants"]) == [
        "original",
        "brightness_x0.85",
        "brightness_x1.15",
        "hue_+10deg",
        "hue_-10deg",
        "saturation_x0.7",
        "saturation_x1.3",
        "colour_normalised",
        "grayscale",
    ]
    original = result["variants"]["original"]
    assert original["accuracy"] == 1.0 and original["drop_accuracy_points"] == 0.0
    for name in ("colour_normalised", "grayscale"):
        variant = result["variants"][name]
        assert variant["accuracy"] <= 0.5
        assert variant["drop_accuracy_points"] == pytest.approx(100 * (1 - variant["accuracy"]))
        assert variant["drop_macro_f1_points"] == pytest.approx(100 * (1 - variant["macro_f1"]))
        assert variant["changed_predictions"] >= 0.5
    assert result["worst"]["drop_accuracy_points"] >= 50
    assert result["n"] == len(y) and result["reference"] == reference.to_dict()
    json.dumps(result)  # JSON-able
    table = rb.format_robustness_table(result)
    assert "grayscale" in table and "Acc. drop" in table


def test_evaluate_robustness_of_a_colour_blind_predictor_shows_no_drop():
    x, y = coloured_set(per_class=2)
    calls = []

    def oracle(batch):  # ignores the pixels: knows the labels in order
        calls.append(len(batch))
        return np.eye(4)[y]

    result = rb.evaluate_robustness(oracle, x, y, NAMES, rb.ColourReference.fit(x))
    assert len(calls) == 9 and set(calls) == {len(y)}
    for variant in result["variants"].values():
        assert variant["accuracy"] == 1.0 and variant["drop_accuracy_points"] == 0.0
        assert variant["changed_predictions"] == 0.0


def test_given_base_probabilities_save_the_pass_over_the_original_images():
    x, y = coloured_set(per_class=2)
    calls = []

    def counting(batch):
        calls.append(batch)
        return colour_predictor(batch)

    given = colour_predictor(x)
    result = rb.evaluate_robustness(counting, x, y, NAMES, None, variants=["grayscale"], base_probabilities=given)
    assert len(calls) == 1  # the grayscale copies only
    assert result == rb.evaluate_robustness(colour_predictor, x, y, NAMES, None, variants=["grayscale"])
    with pytest.raises(ValueError, match="shape"):
        rb.evaluate_robustness(counting, x, y, NAMES, None, base_probabilities=given[:-1])


def test_evaluate_robustness_arguments_are_checked():
    x, y = coloured_set(per_class=1)
    subset = rb.evaluate_robustness(colour_predictor, x, y, NAMES, None, variants=["grayscale"])
    assert list(subset["variants"]) == ["original", "grayscale"] and subset["reference"] is None
    with pytest.raises(ValueError, match="unknown variant"):
        rb.evaluate_robustness(colour_predictor, x, y, NAMES, None, variants=["colour_normalised"])
    with pytest.raises(ValueError, match="shape"):
        rb.evaluate_robustness(lambda b: np.ones((len(b), 3)), x, y, NAMES, None)
    with pytest.raises(ValueError, match="labels"):
        rb.evaluate_robustness(colour_predictor, x, y[:-1], NAMES, None)

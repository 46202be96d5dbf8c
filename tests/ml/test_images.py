import io

import numpy as np
import pytest
from PIL import Image

from ml.images import PAD_VALUE, ImageError, decode_image, prepare_decoded, prepare_image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _two_halves(width=40, height=20):
    """Left half red, right half blue."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = RED
    array[:, width // 2 :] = BLUE
    return Image.fromarray(array, "RGB")


def _save(image, fmt, **params):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def test_accepts_path_bytes_file_pil_and_array(tmp_path):
    image = _two_halves(20, 20)
    path = tmp_path / "x.png"
    image.save(path)
    data = path.read_bytes()
    expected = prepare_image(path, 20)
    assert expected.dtype == np.uint8 and expected.shape == (20, 20, 3)
    file_object = io.BytesIO(data)
    file_object.read()  # an upload handler already read it: we read from the start anyway
    for source in (str(path), data, bytearray(data), file_object, image, np.asarray(image)):
        np.testing.assert_array_equal(prepare_image(source, 20), expected)


def test_non_square_is_padded_with_constant_and_keeps_aspect_ratio():
    out = prepare_image(_two_halves(40, 20), 20)  # scaled to 20x10, centred vertically
    assert out.shape == (20, 20, 3)
    assert (out[:5] == PAD_VALUE).all() and (out[15:] == PAD_VALUE).all()
    np.testing.assert_array_equal(out[5:15, :8], np.broadcast_to(RED, (10, 8, 3)))
    np.testing.assert_array_equal(out[5:15, 12:], np.broadcast_to(BLUE, (10, 8, 3)))


def test_tall_image_is_padded_left_and_right():
    out = prepare_image(Image.new("RGB", (10, 30), (10, 200, 30)), 30)
    assert (out[:, :10] == PAD_VALUE).all() and (out[:, 20:] == PAD_VALUE).all()
    assert (out[:, 10:20] == (10, 200, 30)).all()


def test_square_input_at_target_size_is_unchanged():
    array = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(prepare_image(Image.fromarray(array), 24), array)


def test_exif_orientation_is_applied():
    image = _two_halves(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = _save(image, "JPEG", quality=95, exif=exif.tobytes())
    out = prepare_image(data, 40).astype(int)
    # Displayed image is 20 wide and 40 tall: the left (red) half is now on top; black side pads.
    assert (out[:, :8] < 10).all() and (out[:, 32:] < 10).all()
    top, bottom = out[4:16, 14:26].mean(axis=(0, 1)), out[24:36, 14:26].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


def test_16_bit_tiff_is_scaled_by_its_range_not_clipped(tmp_path):
    ramp = np.linspace(1000, 5000, 16 * 16).reshape(16, 16).astype(np.uint16)
    path = tmp_path / "deep.tif"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = prepare_image(path, 16)
    channel = out[..., 0].astype(int)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert channel.min() == 0 and channel.max() == 255
    assert 100 < channel.mean() < 155  # a linear ramp stays a ramp, not a white image
    assert (np.diff(channel.ravel()) >= 0).all()


def test_32_bit_integer_image_is_scaled():
    array = np.array([[0, 100000], [200000, 400000]], dtype=np.int32)
    out = prepare_image(Image.fromarray(array, "I"), 2)
    assert out[0, 0, 0] == 0 and out[1, 1, 0] == 255 and out[0, 1, 0] == round(255 / 4)


def test_cmyk_becomes_rgb():
    data = _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "TIFF")  # pure red in CMYK
    out = prepare_image(data, 8)
    assert (out == RED).all()


def test_grayscale_becomes_three_equal_channels():
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L")
    out = prepare_image(_save(gray, "PNG"), 8)
    assert (out[..., 0] == np.asarray(gray)).all()
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()


def test_rgba_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red ...
    rgba[:2, :, 3] = 0  # ... fully transparent on the top rows
    rgba[2:, :, 3] = 128  # ... half transparent below
    out = prepare_image(_save(Image.fromarray(rgba, "RGBA"), "PNG"), 4).astype(int)
    assert (out[:2] == 255).all()
    assert (out[2:, :, 0] == 255).all()
    assert (abs(out[2:, :, 1:] - 127) <= 1).all()


def test_la_and_palette_with_transparency():
    la = Image.fromarray(np.dstack([np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)]), "LA")
    assert (prepare_image(la, 4) == 255).all()  # transparent black on white -> white
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0])
    palette.info["transparency"] = 0
    assert (prepare_image(_save(palette, "PNG", transparency=0), 4) == 255).all()
    palette.putpixel((0, 0), 1)
    out = prepare_image(_save(palette, "PNG", transparency=0), 4)
    assert tuple(out[0, 0]) == (0, 255, 0)


@pytest.mark.parametrize("source", [b"", b"not an image at all", 12345])
def test_unreadable_sources_raise_image_error(source):
    with pytest.raises(ImageError):
        prepare_image(source, 8)


def test_truncated_jpeg_and_missing_file_raise_image_error(tmp_path):
    data = _save(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageError):
        prepare_image(data[: len(data) // 2], 8)
    with pytest.raises(ImageError, match="missing.png"):
        prepare_image(tmp_path / "missing.png", 8)


def _sources_of_every_kind():
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated: the decoded image is the displayed one
    rgba = np.zeros((30, 50, 4), dtype=np.uint8)
    rgba[..., 0], rgba[:10, :, 3], rgba[10:, :, 3] = 255, 0, 128
    smear_like = np.random.default_rng(3).integers(0, 256, (300, 220, 3), dtype=np.uint8)
    return {
        "rotated jpeg": _save(_two_halves(40, 20), "JPEG", quality=95, exif=exif.tobytes()),
        "rgba png": _save(Image.fromarray(rgba, "RGBA"), "PNG"),
        "16-bit": _save(Image.fromarray(np.linspace(1000, 5000, 256).reshape(16, 16).astype(np.uint16)), "TIFF"),
        "large jpeg": _save(Image.fromarray(smear_like), "JPEG", quality=90),
        "square at size": _save(_two_halves(24, 24), "PNG"),
    }


@pytest.mark.parametrize("kind", list(_sources_of_every_kind()))
def test_one_decode_prepared_at_several_sizes_equals_prepare_image(kind):
    """The worker decodes an upload once and resizes it for the model and for the smear check."""
    source = _sources_of_every_kind()[kind]
    decoded = decode_image(source)
    for size in (24, 128, 224):
        np.testing.assert_array_equal(prepare_decoded(decoded, size), prepare_image(source, size))


def test_decode_image_refuses_what_prepare_image_refuses():
    with pytest.raises(ImageError):
        decode_image(b"not an image at all")
    with pytest.raises(ValueError):
        prepare_decoded(decode_image(_save(_two_halves(), "PNG")), 0)

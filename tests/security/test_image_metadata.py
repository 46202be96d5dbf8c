"""Stored images carry no metadata (GPS, maker notes, comments); orientation and pixels are kept."""

import io

import pytest
from PIL import ExifTags, Image, PngImagePlugin

from cases.uploads import validate_upload

GPS_MARKER = b"51.5072N-GPS"


def _exif(orientation=1):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "ScopeCam"
    exif[ExifTags.Base.BodySerialNumber] = "SN-4711-SECRET"
    exif[ExifTags.Base.MakerNote] = b"MAKERNOTE-PRIVATE"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSAreaInformation] = GPS_MARKER
    return exif


def _smear(size=(96, 64)):
    image = Image.new("RGB", size, (236, 214, 222))
    for x in range(0, size[0], 8):
        for y in range(0, size[1], 8):
            image.putpixel((x, y), (92, 48, 120))
    image.paste((255, 0, 0), (0, 0, 16, 16))  # marks the top-left corner, to check orientation
    return image


def _named(data, name):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


SECRETS = (GPS_MARKER, b"SN-4711-SECRET", b"MAKERNOTE-PRIVATE", b"ScopeCam", b"Patient: Jane Doe", b"xmpmeta")


def _assert_clean(content):
    for secret in SECRETS:
        assert secret not in content, secret
    stored = Image.open(io.BytesIO(content))
    assert not stored.getexif()
    return stored


def test_jpeg_metadata_is_removed_and_pixels_are_untouched():
    buffer = io.BytesIO()
    _smear().save(
        buffer,
        "JPEG",
        quality=95,
        exif=_exif(),
        comment=b"Patient: Jane Doe",
        xmp=b"<x:xmpmeta>secret</x:xmpmeta>",
        icc_profile=None,
    )
    original = buffer.getvalue()
    assert GPS_MARKER in original and b"Patient: Jane Doe" in original
    result = validate_upload(_named(original, "scope.jpg"))
    assert result.extension == "jpg" and result.reencoded
    stored = _assert_clean(result.content)
    assert "comment" not in stored.info
    assert stored.tobytes() == Image.open(io.BytesIO(original)).tobytes()  # lossless


def test_png_text_and_exif_chunks_are_removed():
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "Patient: Jane Doe")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret</x:xmpmeta>")
    buffer = io.BytesIO()
    _smear().save(buffer, "PNG", pnginfo=info, exif=_exif(), dpi=(300, 300))
    result = validate_upload(_named(buffer.getvalue(), "scope.png"))
    stored = _assert_clean(result.content)
    assert stored.info.get("dpi") == pytest.approx((300, 300), abs=0.1)  # pixel size is kept
    assert stored.tobytes() == _smear().tobytes()


def test_rotated_jpeg_keeps_its_applied_orientation_without_exif():
    buffer = io.BytesIO()
    _smear((96, 64)).save(buffer, "JPEG", quality=95, exif=_exif(orientation=6))
    result = validate_upload(_named(buffer.getvalue(), "rotated.jpg"))
    stored = _assert_clean(result.content)
    assert stored.size == (64, 96) and (result.width, result.height) == (64, 96)
    red = stored.convert("RGB").getpixel((58, 5))  # orientation 6: top-left moves to the top right
    assert red[0] > 200 and red[1] < 80


def test_an_mpo_is_stored_as_its_first_picture_without_the_picture_index():
    first, second = _smear(), Image.new("RGB", (96, 64), (10, 200, 10))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second], exif=_exif(), quality=95)
    original = buffer.getvalue()
    assert Image.open(io.BytesIO(original)).format == "MPO"
    result = validate_upload(_named(original, "stereo.jpg"))
    assert b"MPF\x00" not in result.content
    stored = _assert_clean(result.content)
    assert stored.format == "JPEG" and getattr(stored, "n_frames", 1) == 1
    assert result.content.count(b"\xff\xd8\xff") == 1  # one picture: the second is left out


def test_files_without_metadata_are_stored_byte_for_byte():
    buffer = io.BytesIO()
    _smear().save(buffer, "PNG")
    data = buffer.getvalue()
    result = validate_upload(_named(data, "plain.png"))
    assert result.content == data and not result.reencoded

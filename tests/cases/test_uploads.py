"""Upload validation: every hostile file is built here, in the test, from Pillow or raw bytes."""

import hashlib
import io
import struct
import time
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageFile

from cases.uploads import InvalidImage, ValidatedImage, sanitize_filename, validate_upload, validate_uploads
from core.errors import UploadRejected

MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Builders


def image_bytes(mode="RGB", size=(64, 48), fmt="PNG", colour=None, **save_kwargs):
    if colour is None:
        colour = {"RGB": (180, 60, 120), "RGBA": (180, 60, 120, 100), "CMYK": (10, 200, 30, 40)}.get(mode, 90)
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def gradient(mode, size=(32, 16)):
    """An image whose pixels all differ, so a re-encoding can be compared pixel for pixel."""
    im = Image.new(mode, size)
    w, h = size
    if mode == "RGB":
        im.putdata([((x * 8) % 256, (y * 16) % 256, (x + y) % 256) for y in range(h) for x in range(w)])
    else:
        im.putdata([(x * 8 + y) % 256 for y in range(h) for x in range(w)])
    return im


def encode(im, fmt, **save_kwargs):
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def upload(data, name="smear.png", content_type="image/png"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def png_chunk(chunk_type, body):
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", zlib.crc32(chunk_type + body))


def png_with_text_padding(base_png, total_size):
    """Insert a tEXt chunk after IHDR so that the PNG is exactly total_size bytes and still valid."""
    ihdr_end = 8 + 25
    overhead = 12 + len(b"Comment\x00")
    padding = total_size - len(base_png) - overhead
    assert padding >= 0
    chunk = png_chunk(b"tEXt", b"Comment\x00" + b"x" * padding)
    data = base_png[:ihdr_end] + chunk + base_png[ihdr_end:]
    assert len(data) == total_size
    return data


def huge_png(width, height):
    """A real, valid 1-bit PNG of width x height: tiny on disk, enormous once decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def reason_of(data, name="upload.bin"):
    with pytest.raises(InvalidImage) as info:
        validate_upload(upload(data, name=name))
    return info.value.reason


def stored(result: ValidatedImage):
    im = Image.open(io.BytesIO(result.content))
    im.load()
    return im


class CountingStream(io.RawIOBase):
    """An endless stream of 'A' that records how much was read; .size can lie."""

    def __init__(self, size=None):
        self.name = "endless.jpg"
        if size is not None:
            self.size = size
        self.bytes_read = 0

    def readable(self):
        return True

    def read(self, n=-1):
        assert n is not None and n >= 0, "must never read without a bound"
        self.bytes_read += n
        return b"A" * n


# ---------------------------------------------------------------------------------------------
# Accepted, stored unchanged


def test_rgb_jpeg_is_stored_unchanged_with_its_sha256():
    data = image_bytes("RGB", (64, 48), "JPEG")
    result = validate_upload(upload(data, name="smear.jpg", content_type="image/jpeg"))
    assert result.format == "JPEG"
    assert result.extension == "jpg"
    assert result.content == data
    assert result.reencoded is False
    assert (result.width, result.height) == (64, 48)
    assert result.size_bytes == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.original_filename == "smear.jpg"
    assert result.content_type == "image/jpeg"


@pytest.mark.parametrize(
    "mode, fmt",
    [("L", "JPEG"), ("L", "PNG"), ("RGB", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("1", "PNG")],
)
def test_browser_displayable_images_are_stored_unchanged(mode, fmt):
    data = image_bytes(mode, (20, 10), fmt)
    result = validate_upload(upload(data))
    assert result.format == fmt
    assert result.content == data
    assert result.extension == ("jpg" if fmt == "JPEG" else "png")
    assert (result.width, result.height) == (20, 10)


def test_png_with_alpha_keeps_its_alpha():
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    im.putpixel((3, 3), (0, 255, 0, 128))
    result = validate_upload(upload(encode(im, "PNG")))
    out = stored(result)
    assert out.mode == "RGBA"
    assert out.getpixel((3, 3)) == (0, 255, 0, 128)
    assert out.getpixel((0, 0))[3] == 0


@pytest.mark.parametrize(
    "options",
    [{"progressive": True}, {"restart_marker_rows": 1}, {"quality": 100, "subsampling": 0}],
)
def test_jpeg_variants_browsers_display_are_stored_unchanged(options):
    data = encode(Image.effect_noise((120, 80), 60).convert("RGB"), "JPEG", **options)
    result = validate_upload(upload(data))
    assert result.content == data and result.reencoded is False


def test_multi_picture_jpeg_keeps_only_its_first_picture():
    first = gradient("RGB", (40, 20))
    data = encode(first, "MPO", save_all=True, append_images=[first.rotate(90)])
    result = validate_upload(upload(data, name="camera.jpg"))
    assert (result.format, result.extension, result.reencoded) == ("JPEG", "jpg", True)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    # The first picture's coded data, without the MPO's index (MPF) of the pictures left out.
    assert len(result.content) < len(data) and b"MPF\x00" not in result.content
    assert stored(result).size == (40, 20) and stored(result).format == "JPEG"


def test_trailing_zero_padding_after_a_jpeg_is_harmless():
    data = image_bytes("RGB", (16, 16), "JPEG") + b"\x00" * 64
    assert validate_upload(upload(data)).content == data[:-64]  # accepted; the padding is not stored


# ---------------------------------------------------------------------------------------------
# Type from content only


def test_browser_content_type_and_file_name_are_ignored():
    data = image_bytes("RGB", (16, 16), "JPEG")
    result = validate_upload(SimpleUploadedFile("scan.png", data, content_type="image/png"))
    assert result.format == "JPEG"
    assert result.extension == "jpg"
    assert result.original_filename == "scan.png"  # kept as metadata only

    png = image_bytes("RGB", (16, 16), "PNG")
    result = validate_upload(SimpleUploadedFile("photo.exe", png, content_type="application/x-msdownload"))
    assert (result.format, result.extension) == ("PNG", "png")


def test_text_file_named_jpg_is_rejected():
    data = b"Patient notes: film shows many blasts.\nPlease review.\n"
    with pytest.raises(InvalidImage) as info:
        validate_upload(SimpleUploadedFile("smear.jpg", data, content_type="image/jpeg"))
    assert info.value.reason.startswith("is not an image (it looks like a text file)")
    assert str(info.value).startswith("smear.jpg is not an image")


def test_html_file_named_png_is_rejected():
    data = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
    reason = reason_of(data, name="smear.png")
    assert "is not an image (it looks like an HTML document)" in reason


def test_svg_with_script_is_rejected():
    data = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b"<script>alert(1)</script><rect width='10' height='10'/></svg>"
    )
    reason = reason_of(data, name="smear.svg")
    assert "it looks like an SVG drawing" in reason


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "a PDF document"),
        (image_bytes("RGB", (8, 8), "GIF"), "is a GIF image, which is not accepted"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "is a WebP image, which is not accepted"),
        (b"PK\x03\x04\x14\x00\x00\x00", "a ZIP archive"),
        (b"\x00" * 128 + b"DICM" + b"\x00" * 64, "a DICOM file"),
        (bytes(range(256)) * 4, "is not an image in a supported format"),
    ],
)
def test_other_formats_are_rejected_and_named(data, expected):
    assert expected in reason_of(data)


def test_file_that_starts_like_bmp_but_is_text_is_not_mistaken_for_one():
    assert "text file" in reason_of(b"BMI values: 21.4, 22.0, 23.9\n" * 3)


# ---------------------------------------------------------------------------------------------
# Damaged, empty, hidden data


def test_zero_bytes_is_rejected():
    assert reason_of(b"") == "is empty (0 bytes)"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "BMP"])
def test_truncated_image_is_rejected(fmt):
    data = encode(gradient("RGB", (64, 64)), fmt)
    assert reason_of(data[: len(data) // 2]) == "is damaged or truncated"


def test_truncated_jpeg_is_rejected_even_when_pillow_is_told_to_tolerate_it(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(gradient("RGB", (64, 64)), "JPEG")
    assert reason_of(data[:-40]) == "is damaged or truncated"


def test_png_with_a_corrupted_chunk_is_rejected():
    data = bytearray(encode(gradient("RGB"), "PNG"))
    data[50] ^= 0xFF  # inside IDAT: the chunk checksum no longer matches
    assert reason_of(bytes(data)) == "is damaged or truncated"


def test_png_made_of_a_million_empty_chunks_is_rejected_quickly():
    png = image_bytes("RGB", (8, 8), "PNG")
    data = png[:33] + png_chunk(b"zzZz", b"") * 1_000_000 + png[33:]
    started = time.monotonic()
    assert reason_of(data) == "is damaged (its internal structure is abnormal)"
    assert time.monotonic() - started < 2


def test_png_followed_by_html_is_rejected():
    data = image_bytes("RGB", (16, 16), "PNG") + b"<html><script>fetch('/api/cases/')</script></html>"
    reason = reason_of(data, name="smear.png")
    assert "extra data hidden after the end of the image" in reason


def test_jpeg_followed_by_html_is_rejected_even_when_it_ends_in_an_eoi_marker():
    # Merely looking for the last FFD9 would be fooled by a payload that ends in one.
    data = image_bytes("RGB", (16, 16), "JPEG") + b"<html><script>alert(1)</script></html>\xff\xd9"
    assert "extra data hidden after the end of the image" in reason_of(data, name="smear.jpg")


# ---------------------------------------------------------------------------------------------
# Dimensions and decompression bombs


def test_20000_by_20000_png_is_rejected_from_its_header_without_decoding(monkeypatch):
    data = huge_png(20000, 20000)
    assert len(data) < 200_000  # small on disk...

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixel data must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    started = time.monotonic()
    reason = reason_of(data)
    assert time.monotonic() - started < 2
    assert reason == "is 20000 × 20000 pixels (400 megapixels); the limit is 50 megapixels"


def test_image_between_pillows_warning_and_our_limit_is_rejected_by_our_limit():
    # 9000 x 9000 = 81 megapixels: under Pillow's own warning threshold, over ours.
    reason = reason_of(huge_png(9000, 9000))
    assert reason == "is 9000 × 9000 pixels (81 megapixels); the limit is 50 megapixels"


def test_pixel_limit_comes_from_settings(settings):
    settings.UPLOAD_MAX_PIXELS = 5_000
    assert reason_of(image_bytes("RGB", (100, 100), "PNG")) == (
        "is 100 × 100 pixels (10,000 pixels); the limit is 5,000 pixels"
    )
    assert validate_upload(upload(image_bytes("RGB", (50, 100), "PNG"))).width == 50


def test_pillow_bomb_warning_does_not_block_images_our_limit_allows(monkeypatch, settings):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow would warn at 1,000 and fail at 2,000
    settings.UPLOAD_MAX_PIXELS = 1_000_000
    for size in ((40, 40), (100, 100)):
        result = validate_upload(upload(image_bytes("RGB", size, "PNG")))
        assert (result.width, result.height) == size


# ---------------------------------------------------------------------------------------------
# Re-encoded for display


def test_16_bit_tiff_is_stored_as_8_bit_png_spanning_the_range():
    im = Image.new("I;16", (64, 8))
    im.putdata([1000 + 50 * x for _y in range(8) for x in range(64)])  # 1000..4150 of 65535
    data = encode(im, "TIFF")
    result = validate_upload(upload(data, name="smear.tif", content_type="image/tiff"))
    assert (result.format, result.extension, result.reencoded) == ("TIFF", "png", True)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size_bytes == len(result.content)
    out = stored(result)
    assert out.format == "PNG"
    assert out.mode == "L"
    assert out.getextrema() == (0, 255)  # stretched by the real range, not clipped nor divided by 257
    row = [out.getpixel((x, 0)) for x in range(64)]
    assert row == sorted(row) and len(set(row)) == 64  # every level stays distinct


def test_16_bit_png_is_reencoded_as_8_bit():
    im = Image.new("I;16", (16, 4))
    im.putdata([x * 4000 for _y in range(4) for x in range(16)])
    result = validate_upload(upload(encode(im, "PNG")))
    assert result.reencoded is True
    out = stored(result)
    assert out.mode == "L" and out.getextrema() == (0, 255)


def test_rgb_tiff_is_stored_as_identical_png_pixels_without_metadata():
    im = gradient("RGB")
    data = encode(im, "TIFF", tiffinfo={270: "Patient: Alex Patient, MRN-1"})
    result = validate_upload(upload(data, name="smear.tiff"))
    out = stored(result)
    assert (result.format, result.extension) == ("TIFF", "png")
    assert out.mode == "RGB"
    assert out.tobytes() == im.tobytes()
    assert not out.getexif()
    assert b"MRN-1" not in result.content


def test_bmp_is_stored_as_identical_png_pixels():
    im = gradient("RGB")
    result = validate_upload(upload(encode(im, "BMP"), name="smear.bmp"))
    out = stored(result)
    assert (result.format, result.extension, out.format) == ("BMP", "png", "PNG")
    assert out.convert("RGB").tobytes() == im.tobytes()


def test_cmyk_jpeg_is_stored_as_rgb_png():
    data = image_bytes("CMYK", (24, 12), "JPEG")
    result = validate_upload(upload(data, name="smear.jpg"))
    assert (result.format, result.extension, result.reencoded) == ("JPEG", "png", True)
    out = stored(result)
    assert out.mode == "RGB"
    assert out.size == (24, 12)


def test_jpeg_with_exif_orientation_6_is_rotated_and_its_exif_stripped():
    im = Image.new("RGB", (40, 20), (200, 30, 30))
    im.paste((30, 30, 200), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "MicroscopeCam"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS latitude
    data = encode(im, "JPEG", exif=exif.tobytes(), quality=95)
    result = validate_upload(upload(data, name="smear.jpg"))
    assert (result.width, result.height) == (20, 40)
    assert (result.format, result.extension, result.reencoded) == ("JPEG", "png", True)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    out = stored(result)
    assert out.size == (20, 40)
    r, g, b = out.getpixel((10, 2))  # the left strip is now at the top
    assert b > 150 and r < 100
    assert not out.getexif()
    assert "exif" not in out.info
    assert b"MicroscopeCam" not in result.content


def test_jpeg_with_orientation_1_is_stored_unchanged():
    exif = Image.Exif()
    exif[0x0112] = 1
    data = image_bytes("RGB", (40, 20), "JPEG", exif=exif.tobytes())
    result = validate_upload(upload(data))
    assert (result.width, result.height) == (40, 20)
    # Stored without its EXIF (metadata is never kept), the coded pixels byte for byte.
    assert not stored(result).getexif() and len(result.content) < len(data)
    assert stored(result).tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_multi_page_tiff_is_rejected():
    pages = [gradient("RGB"), gradient("L").convert("RGB")]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert reason_of(data) == "contains 2 pages; upload each page as a separate image"


def test_tiff_whose_other_pages_are_reduced_resolution_copies_is_accepted():
    main, thumbnail = gradient("RGB", (64, 32)), Image.new("RGB", (16, 8))
    # NewSubfileType = 1 marks a reduced-resolution copy (here on every page, the first included).
    data = encode(main, "TIFF", save_all=True, append_images=[thumbnail], tiffinfo={254: 1})
    result = validate_upload(upload(data, name="slide.tif"))
    assert (result.width, result.height) == (64, 32)
    assert stored(result).tobytes() == main.tobytes()


def test_physical_pixel_size_survives_reencoding():
    data = encode(gradient("RGB"), "TIFF", resolution=4000.0, resolution_unit="cm")  # 2.5 µm pixels
    out = stored(validate_upload(upload(data)))
    assert out.info["dpi"] == pytest.approx((10160, 10160), abs=1)


def test_animated_png_is_rejected():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    assert reason_of(data) == "is an animated image; upload a single still image"
    # Still refused when the animation control chunk claims a single frame.
    start = data.index(b"acTL") - 4
    body = struct.pack(">II", 1, 0)
    lying = data[:start] + png_chunk(b"acTL", body) + data[start + 20 :]
    assert reason_of(lying) == "is an animated image; upload a single still image"


# ---------------------------------------------------------------------------------------------
# Size limit


def test_file_of_exactly_the_size_limit_is_accepted_and_one_byte_more_is_not(settings):
    settings.UPLOAD_MAX_BYTES = 4096
    base = image_bytes("RGB", (8, 8), "PNG")
    exact = png_with_text_padding(base, 4096)
    result = validate_upload(upload(exact))
    assert result.content == base and result.size_bytes == len(base)  # accepted; the text chunk is not kept

    over = png_with_text_padding(base, 4097)
    with pytest.raises(InvalidImage) as info:
        validate_upload(upload(over))
    assert info.value.reason == "is 4,097 bytes; the limit is 4,096 bytes (4 KB)"


def test_declared_size_over_the_limit_is_rejected_without_reading():
    stream = CountingStream(size=int(23.4 * MB))
    with pytest.raises(InvalidImage) as info:
        validate_upload(stream)
    assert info.value.reason == "is 23.4 MB; the limit is 20 MB"
    assert stream.bytes_read == 0


def test_lying_size_cannot_make_us_read_a_huge_file(settings):
    settings.UPLOAD_MAX_BYTES = 10_000
    for stream in (CountingStream(size=100), CountingStream()):
        with pytest.raises(InvalidImage) as info:
            validate_upload(stream)
        assert info.value.reason == "is larger than 9.8 KB, the limit for one image"
        assert stream.bytes_read <= 10_001


# ---------------------------------------------------------------------------------------------
# Several files: all or nothing


def test_validate_uploads_returns_every_image_when_all_are_good():
    files = [upload(image_bytes("RGB", (10, 10), "PNG"), name=f"smear{i}.png") for i in range(3)]
    results = validate_uploads(files)
    assert [r.original_filename for r in results] == ["smear0.png", "smear1.png", "smear2.png"]


def test_validate_uploads_names_exactly_the_bad_files():
    good_jpeg = image_bytes("RGB", (16, 16), "JPEG")
    files = [
        upload(good_jpeg, name="good1.jpg"),
        upload(b"just some text\n", name="notes.jpg"),
        upload(image_bytes("RGB", (16, 16), "PNG"), name="good2.png"),
        upload(good_jpeg[:-100], name="cut.jpg"),
        upload(b"", name="empty.png"),
    ]
    with pytest.raises(UploadRejected) as info:
        validate_uploads(files)
    error = info.value
    assert error.message.startswith("3 of 5 files were rejected")
    assert error.details == {
        "notes.jpg": "is not an image (it looks like a text file); upload JPEG, PNG, TIFF or BMP images",
        "cut.jpg": "is damaged or truncated",
        "empty.png": "is empty (0 bytes)",
    }


def test_validate_uploads_keeps_both_reasons_for_bad_files_with_the_same_name():
    files = [upload(b"", name="smear.jpg"), upload(b"hello", name="smear.jpg")]
    with pytest.raises(UploadRejected) as info:
        validate_uploads(files)
    assert info.value.message.startswith("2 of 2 files were rejected")
    assert set(info.value.details) == {"smear.jpg", "smear.jpg (file 2)"}


def test_validate_uploads_one_bad_file_message():
    files = [upload(image_bytes(), name="a.png"), upload(b"<html></html>", name="b.png")]
    with pytest.raises(UploadRejected) as info:
        validate_uploads(files)
    assert info.value.message.startswith("1 of 2 files was rejected")
    assert list(info.value.details) == ["b.png"]


def test_validate_uploads_rejects_no_files_and_too_many(settings):
    with pytest.raises(UploadRejected, match="No files"):
        validate_uploads([])
    settings.UPLOAD_MAX_FILES = 2
    files = [upload(image_bytes(), name=f"{i}.png") for i in range(3)]
    with pytest.raises(UploadRejected, match="Too many files: 3 were sent and at most 2"):
        validate_uploads(files)


# ---------------------------------------------------------------------------------------------
# File names are metadata only


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd.png", "passwd.png"),
        ("C:\\Users\\clara\\Desktop\\smear 1.jpg", "smear 1.jpg"),
        ("smear\x00.jpg\n", "smear.jpg"),
        ("bad\u202egnp.exe", "badgnp.exe"),
        ("..", "image"),
        ("", "image"),
        (None, "image"),
    ],
)
def test_original_filename_is_sanitised(name, expected):
    assert sanitize_filename(name) == expected


def test_long_file_name_is_shortened_keeping_its_extension():
    name = "a" * 300 + ".tiff"
    clean = sanitize_filename(name)
    assert len(clean) == 255 and clean.endswith(".tiff")
    result = validate_upload(upload(image_bytes(), name=name))
    assert result.original_filename == clean

"""Turning an untrusted uploaded file into a safe stored image, or a clear reason why not.

Clinicians upload microscope images of blood smears. Every file is treated as hostile until proven
otherwise. The checks run in this order, and the first one that fails gives the reason:

1. size: the declared size is compared with ``UPLOAD_MAX_BYTES`` before anything is read, and at
   most ``UPLOAD_MAX_BYTES + 1`` bytes are ever read, so a lying ``.size`` cannot make us read a
   huge file; empty files are refused;
2. type: decided from the content's first bytes only (never the file name or the browser's content
   type); JPEG, PNG, TIFF and BMP are accepted, anything else is refused naming what it looks like;
3. dimensions: the header is read by Pillow (lazily, without decoding pixels) and images over
   ``UPLOAD_MAX_PIXELS`` are refused before any pixel data is decoded (decompression bombs);
   Pillow must agree with the detected type; so are images whose decoding, conversion and
   re-encoding would need more than ``UPLOAD_MAX_DECODE_BYTES`` of memory (cases.upload_memory);
4. decoding: the image is fully decoded, so damaged or truncated files are refused;
5. hidden data: bytes appended after the end of a PNG or JPEG image (polyglot files such as "a PNG
   followed by an HTML page") are refused;
6. orientation: the EXIF orientation is applied.

What is stored: the original bytes, less their metadata (cases.image_metadata), when a browser can
display them as they are (8-bit JPEG in RGB or greyscale, PNG of at most 8 bits per channel) and no
rotation is needed; otherwise a
lossless PNG re-encoding of the oriented pixels in a displayable 8-bit mode, without metadata such as
EXIF (GPS, camera serial numbers), so pathologists can see every image in a browser at full
resolution.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import struct
import unicodedata
import warnings
import zlib
from dataclasses import dataclass, field
from typing import NoReturn

from django.conf import settings
from PIL import ExifTags, Image, ImageOps

from cases.image_metadata import strip_jpeg_metadata, strip_png_metadata
from cases.upload_memory import decode_cost
from core.errors import UploadRejected

__all__ = ["InvalidImage", "ValidatedImage", "validate_upload", "validate_uploads"]

ACCEPTED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP")
_ACCEPTED_TEXT = "JPEG, PNG, TIFF or BMP"
_MAX_FILENAME_CHARS = 255
# A TIFF may carry reduced-resolution copies (thumbnails, pyramid levels) after the main image;
# looking further than this many pages is pointless and would only cost time.
_MAX_TIFF_PAGES = 64
# Pillow plugin format names that are the same file type as the one detected from the content.
_PILLOW_FORMATS = {"JPEG": {"JPEG", "MPO"}, "PNG": {"PNG"}, "TIFF": {"TIFF"}, "BMP": {"BMP"}}

_KB = 1024
_MB = 1024 * 1024


class InvalidImage(Exception):
    """An uploaded file cannot be accepted as an image.

    ``reason`` is plain English meant to follow the file's name, for example
    ``"is damaged or truncated"``; ``str()`` of the exception is a whole sentence.
    """

    def __init__(self, reason: str, *, filename: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.filename = filename

    def __str__(self) -> str:
        return f"{self.filename or 'The file'} {self.reason}"


@dataclass(frozen=True)
class ValidatedImage:
    """An upload that passed every check, and what to store for it."""

    content: bytes = field(repr=False)  # the bytes to store
    extension: str  # the extension to store them under: "jpg" or "png"
    format: str  # the format detected in the upload: "JPEG", "PNG", "TIFF" or "BMP"
    width: int  # after EXIF orientation
    height: int
    sha256: str  # hex digest of the original uploaded bytes
    size_bytes: int  # length of ``content``
    original_filename: str  # the uploaded name reduced to a safe base name; metadata only
    reencoded: bool = False  # True when ``content`` is not the uploaded bytes unchanged

    @property
    def content_type(self) -> str:
        return "image/jpeg" if self.extension == "jpg" else "image/png"


# --------------------------------------------------------------------------------------------
# Public API


def validate_upload(uploaded_file) -> ValidatedImage:
    """Check one uploaded file and return what to store, or raise :class:`InvalidImage`.

    ``uploaded_file`` is a Django ``UploadedFile`` or any binary file-like object with ``.read``
    (``.name``, ``.size`` and ``.seek`` are used when present).
    """
    filename = sanitize_filename(getattr(uploaded_file, "name", None))
    try:
        return _validate(uploaded_file, filename)
    except InvalidImage as exc:
        exc.filename = filename
        raise


def validate_uploads(files) -> list[ValidatedImage]:
    """Check every file of one upload; all must be good or :class:`UploadRejected` is raised.

    The error's ``details`` maps each bad file's name to the reason it was rejected, so the user is
    told exactly which files to fix. Nothing is returned unless every file is acceptable.
    """
    files = list(files or [])
    max_files = settings.UPLOAD_MAX_FILES
    if not files:
        reason = "No files were uploaded; add at least one image."
        raise UploadRejected(reason, details={"files": reason})
    if len(files) > max_files:
        reason = f"Too many files: {len(files)} were sent and at most {max_files} can be uploaded at once."
        raise UploadRejected(reason, details={"files": reason})

    validated: list[ValidatedImage] = []
    problems: dict[str, str] = {}
    for position, uploaded_file in enumerate(files, start=1):
        try:
            validated.append(validate_upload(uploaded_file))
        except InvalidImage as exc:
            key = exc.filename or f"file {position}"
            if key in problems:  # two bad files with the same name: keep both reasons
                key = f"{key} (file {position})"
            problems[key] = exc.reason
    if problems:
        count = len(problems)
        verb = "was" if count == 1 else "were"
        raise UploadRejected(
            f"{count} of {len(files)} files {verb} rejected; fix or remove "
            f"{'it' if count == 1 else 'them'} and upload again.",
            details=problems,
        )
    return validated


def sanitize_filename(name) -> str:
    """Reduce an uploaded file name to a printable base name of at most 255 characters."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    name = unicodedata.normalize("NFC", str(name or ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Drop control and formatting characters (NUL, newlines, right-to-left overrides...).
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".").strip()
    if not name:
        return "image"
    if len(name) > _MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and 0 < len(ext) <= 16:
            name = f"{stem[: _MAX_FILENAME_CHARS - len(ext) - 1]}.{ext}"
        else:
            name = name[:_MAX_FILENAME_CHARS]
    return name


# --------------------------------------------------------------------------------------------
# The checks


def _validate(uploaded_file, filename: str) -> ValidatedImage:
    data = _read_within_limit(uploaded_file, settings.UPLOAD_MAX_BYTES)  # (1)
    fmt = _detect_format(data)  # (2)
    # A cheap walk over the PNG chunks / JPEG markers (no pixel decoding): catches truncation and
    # corruption even where Pillow would be lenient, and finds where the image data ends.
    structure = _check_structure(data, fmt)
    max_pixels = settings.UPLOAD_MAX_PIXELS

    with warnings.catch_warnings():
        # Pillow's own decompression-bomb warning becomes an error; its other warnings (odd EXIF
        # and the like) are not the clinician's problem.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = _open_header(data, fmt, max_pixels)  # (3)
        with im:
            width, height = im.size
            _check_pixels(width, height, max_pixels)
            _check_frames(im, fmt)
            _check_decode_memory(im, fmt, structure, len(data))
            try:  # (4)
                im.load()
            except MemoryError:
                raise InvalidImage("is too large to process") from None
            except Exception:  # noqa: BLE001 - any decoder error means the pixels are bad
                raise InvalidImage("is damaged or truncated") from None
            # (5) An MPO (multi-picture JPEG from some cameras) has further pictures after the
            # first; only the first is stored, so what follows it is never kept.
            if structure is not None and im.format != "MPO":
                _check_no_trailing_data(data, structure.end)
            return _build(im, data, fmt, structure, filename)  # (6) and what to store


def _read_within_limit(uploaded_file, limit: int) -> bytes:
    declared = getattr(uploaded_file, "size", None)
    if isinstance(declared, int) and not isinstance(declared, bool) and declared > limit:
        raise InvalidImage(_size_reason(declared, limit))
    _rewind(uploaded_file)
    chunks: list[bytes] = []
    remaining = limit + 1
    while remaining > 0:
        chunk = uploaded_file.read(min(remaining, _MB))
        if not chunk:
            break
        if isinstance(chunk, str):
            raise TypeError("uploaded files must be opened in binary mode")
        chunks.append(bytes(chunk))
        remaining -= len(chunk)
    _rewind(uploaded_file)
    data = b"".join(chunks)
    if len(data) > limit:
        # We stopped reading, so the real size is unknown: it is at least one byte too many.
        raise InvalidImage(f"is larger than {_human_bytes(limit)}, the limit for one image")
    if not data:
        raise InvalidImage("is empty (0 bytes)")
    return data


def _rewind(uploaded_file) -> None:
    seek = getattr(uploaded_file, "seek", None)
    if seek is None:
        return
    try:
        seek(0)
    except (OSError, ValueError):  # not seekable: read from where it stands
        pass


def _open_header(data: bytes, fmt: str, max_pixels: int):
    """Open the image lazily (header only) with the Pillow plugin of the detected format."""
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Over Pillow's own safety limit. Read the header with the plugin directly, without that
        # check, to report the dimensions (or to admit the image when UPLOAD_MAX_PIXELS is set
        # above Pillow's limit).
        im = _open_with_plugin(data, fmt)
        _check_pixels(*im.size, max_pixels)
    except InvalidImage:
        raise
    except MemoryError:
        raise InvalidImage("is too large to process") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types on hostile headers
        _unreadable(fmt)
    if im.format not in _PILLOW_FORMATS[fmt]:
        im.close()
        _unreadable(fmt)
    return im


def _unreadable(fmt: str) -> NoReturn:
    raise InvalidImage(f"cannot be read: it is damaged or truncated, or is an unusual kind of {fmt}") from None


def _open_with_plugin(data: bytes, fmt: str):
    Image.init()
    factory, _accept = Image.OPEN[fmt]
    try:
        return factory(io.BytesIO(data), "")
    except Exception:  # noqa: BLE001 - any plugin error means unreadable
        _unreadable(fmt)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImage(f"is damaged: its header says it is {width} × {height} pixels")
    pixels = width * height
    if pixels > max_pixels:
        size, limit = _human_pixels(pixels), _human_pixels(max_pixels)
        if size == limit:
            size, limit = f"{pixels:,} pixels", f"{max_pixels:,} pixels"
        raise InvalidImage(f"is {width} × {height} pixels ({size}); the limit is {limit}")


def _check_decode_memory(im, fmt: str, structure, data_bytes: int) -> None:
    """Refuse, before decoding, an image whose processing would need more than the memory budget."""
    if fmt == "PNG" and "exif" not in im.info:
        # Pillow decodes a whole PNG to look for EXIF after its pixel data: assume the worst
        # when the chunk walk saw one there, rather than decoding to find out.
        rotated = structure is not None and structure.has_exif
    else:
        rotated = _orientation(im) in range(2, 9)
    needed = data_bytes + decode_cost(
        im.mode,
        im.width,
        im.height,
        stored_as_is=not rotated and _displayable_as_is(im, fmt, structure),
        rotated=rotated,
        has_transparency="transparency" in im.info,
    )
    budget = settings.UPLOAD_MAX_DECODE_BYTES
    if needed > budget:
        raise InvalidImage(
            f"is {im.width} × {im.height} pixels in a format ({im.mode}) that would need "
            f"{_human_bytes(needed)} of memory to check and store, more than the {_human_bytes(budget)} "
            "allowed for one image; upload a smaller image or one with 8 bits per channel"
        )


def _check_frames(im, fmt: str) -> None:
    """Refuse animations and multi-page TIFFs, whose other pictures would be silently lost."""
    if fmt == "PNG" and getattr(im, "n_frames", 1) > 1:
        raise InvalidImage(_ANIMATED)
    if fmt != "TIFF":
        return
    pages = 1
    other_full_pages = False
    try:
        while pages <= _MAX_TIFF_PAGES:
            im.seek(pages)
            pages += 1
            # NewSubfileType bit 0 marks a reduced-resolution copy (thumbnail, pyramid level).
            if not int(im.tag_v2.get(254, 0) or 0) & 1:
                other_full_pages = True
    except EOFError:
        pass
    except Exception:  # noqa: BLE001 - hostile TIFF directories raise many types
        raise InvalidImage("is damaged or truncated") from None
    if pages > 1:
        try:
            im.seek(0)
        except Exception:  # noqa: BLE001 - hostile TIFF directories raise many types
            raise InvalidImage("is damaged or truncated") from None
    if other_full_pages or pages > _MAX_TIFF_PAGES:
        more = "more than " if pages > _MAX_TIFF_PAGES else ""
        raise InvalidImage(f"contains {more}{min(pages, _MAX_TIFF_PAGES)} pages; upload each page as a separate image")


@dataclass(frozen=True)
class _Structure:
    end: int  # offset just past the image's last byte (IEND chunk, EOI marker)
    high_bit_depth: bool = False  # PNG with 16 bits per channel
    browser_decodable: bool = True  # JPEG coding that every browser decodes (baseline/progressive)
    has_exif: bool = False  # a PNG with an eXIf chunk


def _check_structure(data: bytes, fmt: str) -> _Structure | None:
    if fmt == "PNG":
        return _png_structure(data)
    if fmt == "JPEG":
        return _jpeg_structure(data)
    return None  # TIFF and BMP are always re-encoded, so nothing after their data is ever stored


# No sane encoder comes near these counts in a 20 MB file; hostile files made of millions of empty
# chunks or markers would otherwise cost seconds of parsing here and in Pillow.
_MAX_PNG_CHUNKS = 200_000
_MAX_JPEG_SEGMENTS = 100_000
_ABNORMAL = "is damaged (its internal structure is abnormal)"
_ANIMATED = "is an animated image; upload a single still image"


def _png_structure(data: bytes) -> _Structure:
    view = memoryview(data)  # no copies of the chunk bodies
    pos = 8
    high_bit_depth = False
    has_exif = False
    first = True
    for _ in range(_MAX_PNG_CHUNKS):
        if pos + 12 > len(data):
            raise InvalidImage("is damaged or truncated")
        length, chunk_type = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            raise InvalidImage("is damaged or truncated")
        body = view[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", view[pos + 8 + length : end])
        if zlib.crc32(body, zlib.crc32(chunk_type)) != crc:
            raise InvalidImage("is damaged or truncated")
        if first:
            if chunk_type != b"IHDR" or length != 13:
                raise InvalidImage("is damaged or truncated")
            high_bit_depth = body[8] > 8
            first = False
        elif chunk_type in (b"acTL", b"fcTL", b"fdAT"):  # APNG, whatever frame count it claims
            raise InvalidImage(_ANIMATED)
        elif chunk_type == b"eXIf":
            has_exif = True
        pos = end
        if chunk_type == b"IEND":
            return _Structure(end=pos, high_bit_depth=high_bit_depth, has_exif=has_exif)
    raise InvalidImage(_ABNORMAL)


_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# Inside entropy-coded data, FF 00 is an escaped FF byte, FF D0-D7 a restart marker and FF FF a
# fill byte; any other FF xx is the next marker.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_FILL = re.compile(rb"\xff+")
# SOF markers: 0xC0 baseline, 0xC1 extended, 0xC2 progressive; the others (lossless,
# hierarchical, arithmetic coding) are not decoded by every browser.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_structure(data: bytes) -> _Structure:
    """Walk the JPEG markers to the EOI that ends the image (not merely the last FFD9 bytes)."""
    n = len(data)
    pos = 2  # after SOI
    browser_decodable = True
    seen_sof = False
    for _ in range(_MAX_JPEG_SEGMENTS):
        fill = _JPEG_FILL.match(data, pos)  # FF, possibly repeated as fill bytes
        if fill is None:
            raise InvalidImage("is damaged or truncated")
        pos = fill.end()
        if pos >= n:
            raise InvalidImage("is damaged or truncated")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            if not seen_sof:
                raise InvalidImage("is damaged or truncated")
            return _Structure(end=pos, browser_decodable=browser_decodable)
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD8) or pos + 2 > n:
            raise InvalidImage("is damaged or truncated")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2 or pos + length > n:
            raise InvalidImage("is damaged or truncated")
        if marker in _JPEG_SOF:
            seen_sof = True
            precision = data[pos + 2] if length > 2 else 0
            if marker not in (0xC0, 0xC1, 0xC2) or precision != 8:
                browser_decodable = False
        pos += length
        if marker == 0xDA:  # SOS: entropy-coded data runs to the next real marker
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                raise InvalidImage("is damaged or truncated")
            pos = found.start()
    raise InvalidImage(_ABNORMAL)


def _check_no_trailing_data(data: bytes, end: int) -> None:
    trailing = data[end:]
    # Some cameras and tools pad files with zero or 0xFF bytes: harmless.
    if trailing.strip(b"\x00\xff"):
        raise InvalidImage(
            f"contains {_human_bytes(len(trailing))} of extra data hidden after the end of the "
            "image, which is not allowed; export or save the image again and upload the new file"
        )


# --------------------------------------------------------------------------------------------
# What to store


def _build(im, data: bytes, fmt: str, structure: _Structure | None, filename: str):
    orientation = _orientation(im)
    rotated = orientation in range(2, 9)
    common = {
        "format": fmt,
        "sha256": hashlib.sha256(data).hexdigest(),
        "original_filename": filename,
    }
    if not rotated and _displayable_as_is(im, fmt, structure):
        # Only the primary picture of an MPO (structure.end is where it ends), and no metadata
        # (GPS, maker notes, comments, the MPO's index of the pictures left out); pixels untouched.
        strip = strip_jpeg_metadata if fmt == "JPEG" else strip_png_metadata
        content = strip(data, structure.end)
        return ValidatedImage(
            content=content,
            extension="jpg" if fmt == "JPEG" else "png",
            width=im.width,
            height=im.height,
            size_bytes=len(content),
            reencoded=content is not data,
            **common,
        )

    dpi = im.info.get("dpi")
    icc = im.info.get("icc_profile")
    try:
        oriented = im
        if rotated:  # turned in place: the unrotated pixels are freed at once (upload_memory)
            ImageOps.exif_transpose(im, in_place=True)
        display = _to_display_mode(oriented)
        content = _encode_png(display, dpi=_oriented_dpi(dpi, orientation), icc=icc)
    except InvalidImage:
        raise
    except MemoryError:
        raise InvalidImage("is too large to process") from None
    except Exception:  # noqa: BLE001 - any error on hostile pixels means damaged
        raise InvalidImage("is damaged or truncated") from None
    return ValidatedImage(
        content=content,
        extension="png",
        width=display.width,
        height=display.height,
        size_bytes=len(content),
        reencoded=True,
        **common,
    )


def _orientation(im) -> int:
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
        return int(value)
    except Exception:  # noqa: BLE001 - EXIF is optional metadata
        return 1  # unreadable EXIF: nothing trustworthy to apply


def _displayable_as_is(im, fmt: str, structure: _Structure | None) -> bool:
    if fmt == "JPEG":
        return im.mode in ("RGB", "L") and structure is not None and structure.browser_decodable
    if fmt == "PNG":
        return (
            im.mode in ("1", "L", "LA", "P", "RGB", "RGBA") and structure is not None and not structure.high_bit_depth
        )
    return False  # browsers do not display TIFF, and BMP is better stored as PNG


def _to_display_mode(im):
    """Return the pixels in an 8-bit mode that PNG stores and browsers show: L, LA, RGB, RGBA."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode in ("PA", "RGBa"):
        return im.convert("RGBA")
    if mode == "La":
        return im.convert("LA")
    if mode.startswith("I") or mode == "F":
        return _stretch_to_8_bit(im)
    try:
        return im.convert("RGB")  # CMYK, YCbCr, RGBX, HSV...
    except (ValueError, OSError):
        raise InvalidImage(f"uses a colour format ({mode}) that cannot be converted for display") from None


def _stretch_to_8_bit(im):
    """Map high-bit-depth greyscale to 0-255 using the range actually present (not clipping)."""
    as_float = im.convert("F")
    low, high = as_float.getextrema()
    if high > low:
        scale = 255.0 / (high - low)
        return as_float.point(lambda v: (v - low) * scale).convert("L")
    # A uniform image: keep its brightness relative to the bit depth it was stored with.
    full_scale = 65535.0 if im.mode.startswith("I;16") else 255.0
    value = 0 if full_scale <= 0 else round(max(0.0, min(1.0, low / full_scale)) * 255)
    return Image.new("L", im.size, value)


def _oriented_dpi(dpi, orientation: int):
    if not dpi or len(dpi) != 2:
        return None
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError):
        return None
    if x <= 0 or y <= 0:
        return None
    return (y, x) if orientation in (5, 6, 7, 8) else (x, y)


def _encode_png(im, *, dpi, icc) -> bytes:
    """Lossless PNG of ``im`` alone: no EXIF, text or other metadata of the upload."""
    clean = im  # ours alone (decoded for this upload): no copy, which would double the memory
    clean.info = {}  # EXIF, XMP, text chunks, comments... none of it is carried over
    options = {}
    if dpi:
        options["dpi"] = dpi  # the physical pixel size matters for measuring cells
    if icc and _icc_matches(icc, clean.mode):
        options["icc_profile"] = icc  # colour fidelity; a CMYK profile would be wrong after RGB
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _icc_matches(icc: bytes, mode: str) -> bool:
    space = icc[16:20] if isinstance(icc, bytes | bytearray) and len(icc) >= 128 else b""
    return (space == b"RGB " and mode in ("RGB", "RGBA")) or (space == b"GRAY" and mode in ("L", "LA"))


# --------------------------------------------------------------------------------------------
# Content sniffing


def _detect_format(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if _looks_like_bmp(data):
        return "BMP"
    kind, is_image = _describe(data)
    if kind and is_image:
        raise InvalidImage(f"is {kind}, which is not accepted; upload {_ACCEPTED_TEXT} images")
    if kind:
        raise InvalidImage(f"is not an image (it looks like {kind}); upload {_ACCEPTED_TEXT} images")
    raise InvalidImage(f"is not an image in a supported format ({_ACCEPTED_TEXT})")


def _looks_like_bmp(data: bytes) -> bool:
    if not data.startswith(b"BM") or len(data) < 18:
        return False
    (header_size,) = struct.unpack("<I", data[14:18])
    return header_size in (12, 16, 40, 52, 56, 64, 108, 124)


_BINARY_SIGNATURES = [
    # (prefix, description, is an image)
    (b"GIF87a", "a GIF image", True),
    (b"GIF89a", "a GIF image", True),
    (b"II+\x00", "a BigTIFF image", True),
    (b"MM\x00+", "a BigTIFF image", True),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image", True),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 image", True),
    (b"\xff\x0a", "a JPEG XL image", True),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "a JPEG XL image", True),
    (b"8BPS", "a Photoshop document", True),
    (b"\x00\x00\x01\x00", "an icon file", True),
    (b"ZISRAWFILE", "a Zeiss CZI microscope file (export it as TIFF or PNG)", False),
    (b"%PDF-", "a PDF document", False),
    (b"{\\rtf", "an RTF document", False),
    (b"PK\x03\x04", "a ZIP archive or an Office document", False),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office document", False),
    (b"\x1f\x8b", "a compressed (gzip) archive", False),
    (b"7z\xbc\xaf\x27\x1c", "a compressed (7-Zip) archive", False),
    (b"Rar!\x1a\x07", "a compressed (RAR) archive", False),
    (b"MZ", "a Windows program", False),
    (b"\x7fELF", "a program", False),
]

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_HTML_START = re.compile(
    rb"^(<!doctype\s+html|<html|<head|<body|<script|<iframe|<meta|<title|<div|<p[\s>]|<a\s|<form|"
    rb"<style|<table|<!--)"
)


def _describe(data: bytes) -> tuple[str | None, bool]:
    """Name what a refused file looks like, when it is obvious: (description, is an image)."""
    for prefix, description, is_image in _BINARY_SIGNATURES:
        if data.startswith(prefix):
            return description, is_image
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image", True
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "an AVIF image", True
        if brand in _HEIF_BRANDS:
            return "a HEIC/HEIF image (the iPhone photo format)", True
        return "a video", False
    if data[128:132] == b"DICM":
        return "a DICOM file (export it as TIFF or PNG)", False

    text = _as_text(data[:4096])
    if text is None:
        return None, False
    head = text.lstrip().lower().encode("utf-8", "replace")
    if b"<svg" in head:
        return "an SVG drawing", False
    if _HTML_START.match(head) or b"<html" in head or b"<script" in head:
        return "an HTML document", False
    if head.startswith(b"<?xml"):
        return "an XML document", False
    return "a text file", False


def _as_text(head: bytes) -> str | None:
    """Decode the start of a file as text, or None when it is binary."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    else:
        encoding = "utf-8"
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f" for ch in text):
        return None
    return text


# --------------------------------------------------------------------------------------------
# Plain-English numbers


def _trim(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _human_bytes(n: int) -> str:
    if n >= _MB:
        return f"{_trim(n / _MB)} MB"
    if n >= _KB:
        return f"{_trim(n / _KB)} KB"
    return "1 byte" if n == 1 else f"{n:,} bytes"


def _size_reason(size: int, limit: int) -> str:
    shown, shown_limit = _human_bytes(size), _human_bytes(limit)
    if shown == shown_limit:
        return f"is {size:,} bytes; the limit is {limit:,} bytes ({shown_limit})"
    return f"is {shown}; the limit is {shown_limit}"


def _human_pixels(n: int) -> str:
    if n >= 1_000_000:
        return f"{_trim(n / 1_000_000)} megapixels"
    return f"{n:,} pixels"

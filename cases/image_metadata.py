"""Lossless removal of metadata from JPEG and PNG files that are stored as uploaded.

Camera and scanner files carry EXIF (GPS position, serial numbers, maker notes), XMP, comments,
Photoshop resources and, in MPO files, an index of further pictures. None of it is needed to show
or classify a smear, and some of it identifies people or places, so only what decoding and colour
need is kept; the pixel data is copied byte for byte (no re-encoding, no quality loss).

Kept in a JPEG: APP0 (JFIF: pixel density), APP2 ICC_PROFILE (colour), APP14 Adobe (colour
transform, needed to decode) and every coding segment. Dropped: other APPn (EXIF, XMP, MPF, IPTC,
maker notes...) and COM.
Kept in a PNG: the critical chunks and the ancillary chunks that describe how pixels look
(tRNS, gAMA, cHRM, sRGB, iCCP, sBIT, pHYs, bKGD). Dropped: text, eXIf, tIME and any other chunk.

Both functions take a file already checked by cases.uploads (its structure walk found ``end``) and
return the input object itself when there is nothing to remove.
"""

import re
import struct

_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# In entropy-coded data FF 00 is an escaped byte, FF D0-D7 a restart and FF FF fill: not markers.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_KEEP_APP = {0xE0: (b"JFIF\x00", b"JFXX\x00"), 0xE2: (b"ICC_PROFILE\x00",), 0xEE: (b"Adobe",)}
_PNG_KEEP = {
    b"IHDR",
    b"PLTE",
    b"IDAT",
    b"IEND",
    b"tRNS",
    b"gAMA",
    b"cHRM",
    b"sRGB",
    b"iCCP",
    b"sBIT",
    b"pHYs",
    b"bKGD",
}


def strip_jpeg_metadata(data: bytes, end: int) -> bytes:
    out = bytearray(data[:2])  # SOI
    pos, removed = 2, False
    while pos < end:
        start = pos
        while data[pos] == 0xFF:  # a marker, possibly after fill bytes
            pos += 1
        marker = data[pos]
        pos += 1
        if marker == 0xD9 or marker in _JPEG_STANDALONE:  # EOI, RSTn: no length
            out += data[start:pos]
            continue
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        segment_end = pos + length
        if marker == 0xDA:  # SOS: its header, then entropy-coded data up to the next real marker
            segment_end = _next_marker(data, segment_end, end)
        elif _is_metadata(marker, data[pos + 2 : segment_end]):
            removed = True
            pos = segment_end
            continue
        out += data[start:segment_end]
        pos = segment_end
    return bytes(out) if removed or end < len(data) else data


def _is_metadata(marker: int, body: bytes) -> bool:
    if marker == 0xFE:  # COM
        return True
    if 0xE0 <= marker <= 0xEF:
        return not body.startswith(_JPEG_KEEP_APP.get(marker, ()))
    return False


def _next_marker(data: bytes, pos: int, end: int) -> int:
    found = _NEXT_MARKER.search(data, pos, end)
    return found.start() if found else end - 2  # the EOI


def strip_png_metadata(data: bytes, end: int) -> bytes:
    out = bytearray(data[:8])
    pos, removed = 8, False
    while pos < end:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunk_end = pos + 12 + length
        if data[pos + 4 : pos + 8] in _PNG_KEEP:
            out += data[pos:chunk_end]
        else:
            removed = True
        pos = chunk_end
    return bytes(out) if removed or end < len(data) else data

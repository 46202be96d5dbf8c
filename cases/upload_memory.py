"""How much memory checking and storing an upload needs, known before any pixel is decoded.

A small file can hold a huge image (a 126 KB PNG of 49 megapixels at 16 bits per channel), and
Pillow holds decoded pixels in 1, 2 or 4 bytes each whatever the file's size; converting for
display and writing the PNG to store need further copies. ``decode_cost`` bounds the peak from the
header alone, so cases.uploads refuses an image that would need more than
``UPLOAD_MAX_DECODE_BYTES`` before decoding it: several uploads at once then stay within a known
total (four at the default 100 MB stay under 512 MB; measured in tests/security/test_upload_memory.py).
"""

# Bytes per pixel of Pillow's in-memory modes (everything not listed takes 4: RGB, RGBA, CMYK, I, F...).
_PILLOW_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Display modes the stored PNG is written from (see cases.uploads._to_display_mode).
_DISPLAY_BYTES = {"L": 1, "LA": 4, "RGB": 4, "RGBA": 4}
_PNG_BANDS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def _display_mode(mode: str, has_transparency: bool) -> str:
    if mode in _DISPLAY_BYTES:
        return mode
    if mode == "1" or mode.startswith("I") or mode == "F":
        return "L"
    if mode in ("PA", "RGBa") or (mode == "P" and has_transparency):
        return "RGBA"
    if mode == "La":
        return "LA"
    return "RGB"


def decode_cost(
    mode: str, width: int, height: int, *, stored_as_is: bool, rotated: bool, has_transparency: bool = False
) -> int:
    """Peak bytes to decode, orient, convert and re-encode one image of this header."""
    pixels = width * height
    decoded = _PILLOW_BYTES.get(mode, 4)
    if stored_as_is:
        return pixels * decoded
    display = _display_mode(mode, has_transparency)
    converted = 0 if display == mode else _DISPLAY_BYTES[display]
    if mode.startswith("I") or mode == "F":
        conversion_peak = 4 + 4  # the float copy and its stretched copy (cases.uploads._stretch_to_8_bit)
    else:
        conversion_peak = converted
    # The PNG being written, at worst incompressible, and once more when its buffer is read out.
    encoded = 2 * _PNG_BANDS[display]
    stages = (
        2 * decoded if rotated else decoded,  # rotation makes a turned copy, then drops the original
        decoded + conversion_peak,
        decoded + converted + encoded,
    )
    return pixels * max(stages)

"""Checking uploads has a memory bound: four worst-case uploads at once stay under 512 MB.

Each case runs in a fresh process (peak resident size is per process and never goes down);
the images are written by another process so that making them does not count.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMIT_MB = 512

MAKE = """
import sys
from PIL import Image
kind, side, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if kind == "gray16":
    Image.new("I;16", (side, side), 1000).save(path, "PNG")
elif kind == "rgb8":
    Image.new("RGB", (side, side), (200, 40, 90)).save(path, "PNG")
elif kind == "cmyk":
    Image.new("CMYK", (side, side), (10, 20, 30, 40)).save(path, "TIFF", compression="tiff_deflate")
elif kind == "rotated-jpeg":
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (side, side), (200, 40, 90)).save(path, "JPEG", exif=exif)
"""


def _run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=300
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, side, outcome",
    [
        ("gray16", 7000, "refused"),  # the 49-megapixel 16-bit PNG of ~110 KB: ~330 MB each before the bound
        ("gray16", 3200, "stored"),  # the largest 16-bit greyscale under the bound (stretched to 8 bits)
        ("rgb8", 5100, "stored"),  # 26 megapixels stored as uploaded
        ("cmyk", 2700, "stored"),  # converted to RGB and re-encoded: the most copies per pixel
        ("rotated-jpeg", 3200, "stored"),  # turned, then re-encoded as PNG
    ],
)
def test_four_worst_case_uploads_at_once_stay_under_512_mb(tmp_path, kind, side, outcome):
    path = tmp_path / f"{kind}-{side}.img"
    _run("-c", MAKE, kind, str(side), str(path))
    report = json.loads(
        _run("-m", "tests.security.upload_memory_probe", *[str(path)] * 4).stdout.strip().splitlines()[-1]
    )
    assert [result[0] for result in report["outcomes"]] == [outcome] * 4, report["outcomes"]
    print(f"{kind} {side}x{side} x4: peak +{report['peak_delta_mb']:.0f} MB")
    assert report["peak_delta_mb"] < LIMIT_MB
    if outcome == "refused":
        assert "memory" in report["outcomes"][0][1] and report["peak_delta_mb"] < 50

"""Rendered frames as pixels: hashing, blank detection, PSNR and outlier comparison.

PNG bytes differ between two renders of the same frame (Blender stamps the date and
render time into the file), so everything here works on decoded RGBA pixels. numpy and
Pillow are imported on first use: a provider's task runner imports this module on every
task and most tasks never decode an image.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Pixels: TypeAlias = NDArray[np.uint8]

# PNG text key under which a tile render records where it sits in the full frame.
BOX_KEY = "gpudepin_box"
# Below this standard deviation (in 0-255 units) an image carries no picture: a flat
# colour a cheating provider could return without rendering. The demo scene's frames
# have a standard deviation near 60.
BLANK_STD = 2.0

Box = tuple[int, int, int, int]


def load_pixels(path: Path) -> Pixels:
    """Decode an image into an ``(height, width, 4)`` RGBA array of bytes."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGBA"), dtype=np.uint8)


def pixel_hash(path: Path) -> str:
    """SHA-256 of the decoded pixels (and size), blind to PNG metadata and compression."""
    pixels = load_pixels(path)
    digest = hashlib.sha256(f"{pixels.shape[1]}x{pixels.shape[0]}:RGBA:".encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def is_blank(path: Path, min_std: float = BLANK_STD) -> bool:
    """True when the image is (nearly) one flat colour, i.e. shows nothing."""
    pixels = load_pixels(path).reshape(-1, 4)
    return float(pixels.std(axis=0).max()) < min_std


def psnr(a: Pixels, b: Pixels) -> float:
    """Peak signal-to-noise ratio in dB between two same-sized images; ``inf`` if identical."""
    import numpy as np

    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def outlier_fraction(a: Pixels, b: Pixels, tolerance: int) -> float:
    """The fraction of channel values of two same-sized images that differ by more than
    ``tolerance`` (0-255 units)."""
    import numpy as np

    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(np.mean(diff > tolerance))


def read_box(path: Path) -> Box | None:
    """The region of the full frame a tile PNG was rendered for, if it records one."""
    from PIL import Image

    with Image.open(path) as img:
        raw = img.info.get(BOX_KEY)
    if not isinstance(raw, str):
        return None
    left, top, right, bottom = (int(part) for part in raw.split(","))
    return left, top, right, bottom


def write_box(path: Path, box: Box) -> None:
    """Re-save a tile PNG with its region recorded, so ``compare`` can find it later."""
    from PIL import Image, PngImagePlugin

    with Image.open(path) as img:
        img.load()
        meta = PngImagePlugin.PngInfo()
        meta.add_text(BOX_KEY, ",".join(str(v) for v in box))
        img.save(path, format="PNG", pnginfo=meta)


def crop(pixels: Pixels, box: Box) -> Pixels:
    """The ``(left, top, right, bottom)`` region of an image, top-left origin."""
    left, top, right, bottom = box
    return pixels[top:bottom, left:right]

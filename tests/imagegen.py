"""Tiny generated photos for tests (no data files are committed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def jpeg_bytes(width: int = 320, height: int = 240, seed: int = 0, quality: int = 90) -> bytes:
    """A noisy-gradient JPEG that compresses like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1
    )
    noise = rng.integers(0, 40, size=(height, width, 3))
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(width: int, height: int, mode: str = "L") -> bytes:
    """A flat PNG (compresses to almost nothing whatever its pixel count)."""
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()

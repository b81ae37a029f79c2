"""A tiny generated detection dataset (dark blobs = potholes, painted boxes = graffiti)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_toy_source(
    root: Path, n_train: int = 8, n_val: int = 4, size: int = 96, seed: int = 0
) -> Path:
    """Write `images/{train,val}` + YOLO-seg `labels/` under root and return root."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(120, 170, 3)))
            draw = ImageDraw.Draw(img)
            lines = []
            cx, cy = rng.uniform(0.3, 0.7, 2) * size
            r = rng.uniform(0.12, 0.25) * size
            angles = np.sort(rng.uniform(0, 2 * np.pi, 8))
            pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]
            draw.polygon(pts, fill=(30, 30, 30))
            lines.append("0 " + " ".join(f"{x / size:.4f} {y / size:.4f}" for x, y in pts))
            if i % 2:
                x0, y0 = rng.uniform(0.05, 0.3, 2) * size
                w, h = rng.uniform(0.15, 0.25, 2) * size
                draw.rectangle([x0, y0, x0 + w, y0 + h], fill=(220, 40, 200))
                box = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
                lines.append("1 " + " ".join(f"{x / size:.4f} {y / size:.4f}" for x, y in box))
            img.save(root / "images" / split / f"toy{i}.jpg", quality=95)
            (root / "labels" / split / f"toy{i}.txt").write_text("\n".join(lines) + "\n")
    return root

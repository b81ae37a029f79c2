"""Cases with real stored photos and detector findings, for the label and export tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pipeline import intake
from pipeline.context import Context
from pipeline.types import Finding, MeasurementOut

LAT, LON = 42.3663, -71.1056
# Stored 320x240 with EXIF orientation 6 (rotate 90 deg): upright it is 240 wide, 320 tall.
STORED = (320, 240)
UPRIGHT = (240, 320)


def rotated_jpeg(seed: int) -> bytes:
    """A photo-like JPEG stored sideways, as phones write portrait photos."""
    rng = np.random.default_rng(seed)
    w, h = STORED
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // w, y * 255 // h, (x * y + seed) % 256], -1)
    arr = np.clip(arr + rng.integers(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90, exif=exif)
    return buf.getvalue()


def finding(cls: str, poly: list[tuple[float, float]], photo: int = 0) -> Finding:
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    return Finding(
        class_name=cls,
        confidence=0.6,
        bbox_xyxy=(min(xs), min(ys), max(xs), max(ys)),
        polygon_px=poly,
        measurement=MeasurementOut(method="pixels-only", area_px=100.0),
        photo=photo,
    )


POTHOLE = [(20.0, 200.0), (120.0, 200.0), (120.0, 280.0), (20.0, 280.0)]
GRAFFITI = [(150.0, 20.0), (230.0, 20.0), (230.0, 90.0)]


def processed_case(
    ctx: Context, seed: int, findings: list[Finding] | None = None, duplicate_of: str | None = None
) -> str:
    """A case made through the upload path (its photo stored) and given detector findings."""
    form = intake.ReportForm(lat=LAT, lon=LON)
    case_id = intake.submit(ctx, rotated_jpeg(seed), form)
    found = [finding("pothole", POTHOLE), finding("graffiti", GRAFFITI)]
    ctx.store.save_result(
        case_id,
        status="needs_review" if duplicate_of is None else "closed",
        findings=found if findings is None else findings,
        category="pothole",
        severity="medium",
        place=None,
        lat=LAT,
        lon=LON,
        routing=None,
        by="worker",
        why="processed",
        duplicate_of=duplicate_of,
        resolution="duplicate" if duplicate_of else None,
    )
    return case_id

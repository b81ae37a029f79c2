"""Measuring an outline in a photo: the one path for detector masks and for self-tagging.

The resident (or a crew member) draws a polygon or a box on a photo, optionally with the
crew card in view or two points a known length apart; a box is refined to the object's
outline first. The detector's masks go through `measure_outline` the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipeline.context import Context
from pipeline.errors import InvalidReport, PhotoRejected
from pipeline.intake import parse_bool, parse_number, parse_pose

if TYPE_CHECKING:  # vision is imported lazily: the API starts without OpenCV loaded
    from vision.image import DecodedImage
    from vision.marker import MarkerSighting
    from vision.measure import Pose
    from vision.measure_scale import ScaleBar
    from vision.types import Measurement

# Big enough for the card's corners to be found; the outline is measured at full size anyway.
MEASURE_LONG_SIDE = 2048


@dataclasses.dataclass(frozen=True)
class MeasureForm:
    """The fields of a measure request as they arrived (strings from a form, or None)."""

    case_id: str | None = None
    polygon: str | None = None  # JSON [[x, y], ...] in full-size image pixels
    box: str | None = None  # JSON [x0, y0, x1, y1]
    surface: str | None = None  # 'ground' (default) or 'wall'
    pitch_deg: str | float | None = None
    roll_deg: str | float | None = None
    camera_height_m: str | float | None = None
    camera_height_sigma_m: str | float | None = None
    tilt_sigma_deg: str | float | None = None
    marker: str | bool | None = None  # look for the crew card (default true)
    scale_points: str | None = None  # JSON [[x1, y1], [x2, y2]]
    scale_length_m: str | float | None = None


# How far a phone's own pose readings are off (1 sigma): the accelerometer's pitch and roll
# while the hand moves, and a height the app estimates from the person's stature. These are the
# issue's (and bench/measure.py's) 5 deg and 0.2 m; a tighter claim made intervals too narrow.
# An app that knows better says so (tilt_sigma_deg, camera_height_sigma_m: docs/measuring.md).
DEVICE_TILT_SIGMA_DEG = 5.0
DEVICE_HEIGHT_SIGMA_M = 0.2


def pose_from(pose: dict[str, float] | None) -> Pose:
    """The pose to measure with: the device's readings with their noise; else the default."""
    from vision.measure import Pose

    base = Pose.default()
    if not pose:
        return base
    tilt = pose.get("tilt_sigma_deg", DEVICE_TILT_SIGMA_DEG)
    return dataclasses.replace(
        base,
        pitch_deg=pose.get("pitch_deg", base.pitch_deg),
        roll_deg=pose.get("roll_deg", base.roll_deg),
        height_m=pose.get("height_m", base.height_m),
        pitch_sigma_deg=tilt if "pitch_deg" in pose else base.pitch_sigma_deg,
        roll_sigma_deg=tilt if "roll_deg" in pose else base.roll_sigma_deg,
        height_sigma_m=pose.get("height_sigma_m", DEVICE_HEIGHT_SIGMA_M)
        if "height_m" in pose
        else base.height_sigma_m,
        source="device",
    )


def find_card(img: DecodedImage) -> MarkerSighting | None:
    """The crew marker card in a decoded photo, corners in the full-size frame."""
    from vision.marker import find_marker

    return find_marker(img.rgb, scale=img.scale)


def measure_outline(
    img: DecodedImage,
    polygon_full: np.ndarray,
    *,
    surface: Literal["ground", "wall"],
    pose: Pose,
    card: MarkerSighting | None = None,
    scale: ScaleBar | None = None,
) -> Measurement:
    """Measure one outline (full-size pixels) by the best method the photo allows."""
    from vision.measure_best import measure_best

    return measure_best(
        polygon_full,
        img.capture,
        surface=surface,
        pose=pose,
        marker=card,
        scale=scale,  # type: ignore[arg-type]
        rgb=img.rgb,  # the ground plane reads the camera's tilt off the road's texture
    )


def measure_request(ctx: Context, data: bytes | None, form: MeasureForm) -> dict[str, Any]:
    """Measure what the person drew; the Measurement as JSON, plus the outline used."""
    from vision.errors import ImageRejected, InvalidArgument
    from vision.image import decode
    from vision.measure_outline import refine_box
    from vision.measure_scale import ScaleBar

    s = ctx.settings
    surface = (form.surface or "ground").strip().lower()
    if surface != "ground" and surface != "wall":
        raise InvalidReport(
            f"surface must be 'ground' or 'wall', got {surface[:20]!r}", field="surface"
        )
    pose_fields = parse_pose(
        form.pitch_deg,
        form.roll_deg,
        form.camera_height_m,
        form.camera_height_sigma_m,
        form.tilt_sigma_deg,
    )
    use_marker = parse_bool("marker", form.marker, default=True)
    length = parse_number("scale_length_m", form.scale_length_m, 0.001, 1000)
    marks = _points("scale_points", form.scale_points, 2, 2) if form.scale_points else None
    if (marks is None) != (length is None):
        raise InvalidReport("scale_points and scale_length_m go together", field="scale_points")
    if (form.polygon is None) == (form.box is None):
        raise InvalidReport("send exactly one of polygon or box", field="polygon")

    if data is None:
        if not form.case_id:
            raise InvalidReport("send a photo or the case_id of a stored report", field="photo")
        report = ctx.store.get(form.case_id).report  # CaseNotFound is a 404
        if report.photo_sha256 is None:
            raise InvalidReport(f"case {form.case_id} has no photo to measure", field="case_id")
        data = ctx.media.get(report.photo_sha256)
        pose_fields = {**(report.device_pose or {}), **pose_fields}
    elif form.case_id:
        raise InvalidReport("send a photo or a case_id, not both", field="case_id")
    try:
        img = decode(
            data,
            max_pixels=s.max_pixels,
            max_bytes=s.max_upload_bytes,
            target_long_side=MEASURE_LONG_SIDE,
        )
    except ImageRejected as exc:
        raise PhotoRejected(str(exc), field="photo") from exc
    w, h = img.capture.width_px, img.capture.height_px
    try:
        if form.box is not None:
            box = _points("box", form.box, 1, 4).reshape(4)
            _inside("box", box.reshape(2, 2), w, h)
            box = np.clip(box, 0, [w, h, w, h])
            if not (box[0] < box[2] and box[1] < box[3]):
                raise InvalidReport(
                    "box must be [x0, y0, x1, y1] with x0 < x1, y0 < y1", field="box"
                )
            polygon = refine_box(img.rgb, box * img.scale) / img.scale
        else:
            polygon = _points("polygon", form.polygon, 3, 2, most=10_000)
            _inside("polygon", polygon, w, h)
        scale = None
        if marks is not None and length is not None:
            scale = ScaleBar(tuple(marks[0]), tuple(marks[1]), length)
        card = find_card(img) if use_marker else None
        m = measure_outline(
            img, polygon, surface=surface, pose=pose_from(pose_fields), card=card, scale=scale
        )
    except InvalidArgument as exc:
        raise InvalidReport(str(exc)) from exc
    body = dataclasses.asdict(m)
    body["surface"] = surface
    body["polygon_px"] = [[round(float(x), 1), round(float(y), 1)] for x, y in polygon]
    body["marker_corners_px"] = None if card is None else np.round(card.corners_px, 2).tolist()
    body["image_size"] = [w, h]
    return body


def _points(field: str, raw: str | None, count: int, dims: int, most: int | None = None):
    """A JSON list of `count` (at least, with `most`) finite [x, y] pairs or one flat list."""
    try:
        arr = np.asarray(json.loads(raw or ""), dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidReport(f"{field} must be a JSON list of numbers", field=field) from None
    if dims == 4:
        ok = arr.shape == (4,)
    elif most is not None:
        ok = arr.ndim == 2 and arr.shape[1] == 2 and count <= len(arr) <= most
    else:
        ok = arr.shape == (count, dims)
    if not ok:
        want = "[x0, y0, x1, y1]" if dims == 4 else f"[[x, y], ...] ({count}+ points)"
        raise InvalidReport(f"{field} must look like {want}, got shape {arr.shape}", field=field)
    if not np.isfinite(arr).all():
        raise InvalidReport(f"{field} has a non-finite number", field=field)
    return arr


def _inside(field: str, pts: np.ndarray, w: int, h: int) -> None:
    """Refuse outlines drawn off the photo (a slip of the finger over the edge is allowed)."""
    slack = 0.02 * math.hypot(w, h)
    if (
        (pts[:, 0] < -slack).any()
        or (pts[:, 0] > w + slack).any()
        or ((pts[:, 1] < -slack).any() or (pts[:, 1] > h + slack).any())
    ):
        raise InvalidReport(
            f"{field} goes outside the {w}x{h} photo; use full-size image pixels", field=field
        )

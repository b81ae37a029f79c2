"""User scale: two points the person marked, a known length apart on the object's surface.

On the ground the pose gives the plane's orientation and the marked length its scale, so the
camera height drops out; on a wall the wall is taken as facing the camera (pixels scale
uniformly). The interval comes from click error and, on the ground, the pose's tilt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vision.errors import InvalidArgument, NotMeasurable
from vision.measure import (
    FOCAL_SIGMA_REL,
    MIN_VALID_FRACTION,
    Pose,
    _focal_note,
    _metric,
    _shape_stats,
    _shoelace,
    _truncated_normal,
    intrinsics,
)
from vision.types import Capture, Measurement

DEFAULT_CLICK_SIGMA_PX = 3.0
MIN_SCALE_PX = 10.0  # two marks closer than this say nothing about the scale
MAX_RATIO = 200.0  # the outline may be at most this many scale lengths from the marks


@dataclass(frozen=True)
class ScaleBar:
    """Two marked pixels (full-size oriented frame) and the real length between them."""

    p1: tuple[float, float]
    p2: tuple[float, float]
    length_m: float
    click_sigma_px: float = DEFAULT_CLICK_SIGMA_PX

    def __post_init__(self) -> None:
        pts = np.asarray([self.p1, self.p2], dtype=np.float64)
        if pts.shape != (2, 2) or not np.isfinite(pts).all():
            raise InvalidArgument("scale points must be two finite (x, y) pixel pairs")
        if not (math.isfinite(self.length_m) and 0.001 <= self.length_m <= 1000.0):
            raise InvalidArgument(f"scale length must be in [0.001, 1000] m, got {self.length_m}")
        if not (math.isfinite(self.click_sigma_px) and 0 <= self.click_sigma_px <= 100):
            raise InvalidArgument(f"click_sigma_px must be in [0, 100], got {self.click_sigma_px}")


def measure_with_scale(
    poly: np.ndarray,
    scale: ScaleBar,
    capture: Capture,
    *,
    surface: str = "ground",
    pose: Pose | None = None,
    samples: int = 256,
    seed: int = 0,
) -> Measurement:
    """Area, length, width of an outline scaled by a marked length; NotMeasurable if unsound."""
    poly = np.asarray(poly, np.float64).reshape(-1, 2)
    marks = np.array([scale.p1, scale.p2], np.float64)
    gap = float(np.linalg.norm(marks[1] - marks[0]))
    if gap < MIN_SCALE_PX:
        raise NotMeasurable(
            f"the two scale points are {gap:.1f} px apart (need {MIN_SCALE_PX:g}); "
            "mark the ends of something longer"
        )
    pose = pose or Pose.default()
    fx, cx, cy, focal_source = intrinsics(capture)
    rng = np.random.default_rng(seed)
    f = fx * np.exp(rng.normal(0.0, FOCAL_SIGMA_REL[focal_source], samples))
    clicks = marks[None] + rng.normal(0.0, scale.click_sigma_px, (samples, 2, 2))
    roll = np.radians(rng.normal(pose.roll_deg, pose.roll_sigma_deg, samples))
    area_px = abs(_shoelace(poly))
    click_note = (
        f"two marks {gap:.0f} px apart, {scale.length_m:g} m, +-{scale.click_sigma_px:g} px"
    )
    if surface == "wall":
        k = scale.length_m / np.maximum(np.linalg.norm(clicks[:, 1] - clicks[:, 0], axis=1), 1e-6)
        pts = (poly - [cx, cy])[None] * k[:, None, None]
        area, length, width, centroid = _shape_stats(pts)
        depth = f * k  # the wall's distance follows from the scale
        right = centroid[:, 0] * np.cos(roll) + centroid[:, 1] * np.sin(roll)
        bearing = float(np.degrees(np.median(np.arctan2(right, depth))))
        note = (
            f"user-scale: {click_note}, on a flat wall facing the camera; "
            f"{_focal_note(capture, focal_source)}; medians of {samples} samples, 5-95% intervals"
        )
        distance = np.hypot(depth, right)
        return _metric("user-scale", area_px, area, length, width, distance, bearing, note)

    pitch = np.radians(
        _truncated_normal(rng, pose.pitch_deg, pose.pitch_sigma_deg, -90, 90, samples)
    )
    # Per sample: outline and marks on a ground plane 1 m below the camera; the marks fix scale.
    pts_all = np.concatenate([poly[None].repeat(samples, 0), clicks], axis=1)
    xw, yw, zw = _world_rays_batch(pts_all, f, cx, cy, pitch, roll)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = 1.0 / -zw
        g = np.stack([t * xw, t * yw], -1)
        gap_m = np.linalg.norm(g[:, -1] - g[:, -2], axis=-1)
        k = scale.length_m / gap_m
        g = g * k[:, None, None]
    ok = (zw < -1e-9).all(axis=1) & np.isfinite(g).all(axis=(1, 2)) & (gap_m > 1e-9)
    span = np.linalg.norm(g[:, :-2] - g[:, -2:].mean(1, keepdims=True), axis=-1).max(-1)
    ok &= span <= MAX_RATIO * scale.length_m
    if ok.sum() < MIN_VALID_FRACTION * samples:
        raise NotMeasurable(
            f"the outline or the scale marks reach the horizon in {samples - int(ok.sum())} of "
            f"{samples} samples of the pose; the marked length cannot be carried to the outline"
        )
    area, length, width, centroid = _shape_stats(g[ok, :-2])
    distance = np.hypot(centroid[:, 0], centroid[:, 1])
    bearing = float(np.degrees(np.median(np.arctan2(centroid[:, 0], centroid[:, 1]))))
    note = (
        f"user-scale: {click_note}, on flat ground; plane tilt from pitch {pose.pitch_deg:g} +- "
        f"{pose.pitch_sigma_deg:g} deg, roll {pose.roll_deg:g} +- {pose.roll_sigma_deg:g} deg "
        f"(pose: {pose.source}; camera height not needed); {_focal_note(capture, focal_source)}; "
        f"medians of {int(ok.sum())} samples, 5-95% intervals"
    )
    return _metric("user-scale", area_px, area, length, width, distance, bearing, note)


def _world_rays_batch(
    pts: np.ndarray, f: np.ndarray, cx: float, cy: float, pitch: np.ndarray, roll: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """measure._world_rays for per-sample points (n, K, 2): the clicks move with each sample."""
    x = (pts[..., 0] - cx) / f[:, None]
    y = (pts[..., 1] - cy) / f[:, None]
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    xl, yl = cr * x - sr * y, sr * x + cr * y
    cp, sp = np.cos(pitch)[:, None], np.sin(pitch)[:, None]
    return xl, -yl * sp + cp, -yl * cp - sp

"""Metric size of a detected outline from one photo: ground-plane or wall-distance geometry.

Frames. Pixels: the full-size, upright (EXIF-oriented) image; x right, y down, pixel (i, j)
covers [i, i+1) x [j, j+1), so the image centre is (W/2, H/2). Camera: x right, y down, z
along the optical axis. World: X right, Y forward (the optical axis' horizontal direction),
Z up, camera at (0, 0, height). Pitch turns the optical axis below the horizon; positive roll
turns the camera clockwise about its optical axis as its user sees it (its right edge dips).

Methods, in the order a photo earns them (vision/measure_best.py picks): `marker` (the crew
card in the frame, vision/marker.py), `user-scale` (two points a known length apart,
vision/measure_scale.py), then the geometric guesses here: `ground-plane` and `wall-distance`
assume a pose; `pixels-only` is what is left when no metric guess is honest.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from vision.errors import InvalidArgument
from vision.types import Capture, Measurement, MeasureMethod

if TYPE_CHECKING:
    from vision.measure_tilt import TiltReading

DIAGONAL_35MM = 43.27  # mm, the diagonal of a 36x24 mm frame that "35 mm equivalent" refers to
DEFAULT_FOCAL_35MM = 26.0  # typical phone main camera (24-28 mm equivalent)
MAX_GROUND_RANGE_M = 60.0  # beyond this a ray grazes the ground too flatly to measure anything
MIN_VALID_FRACTION = 0.8  # samples that must hit the ground for a ground-plane result
DEFAULT_WALL_DISTANCE_M = 4.0
DEFAULT_WALL_DISTANCE_SIGMA_M = 2.0
MIN_WALL_DISTANCE_M = 0.3

# How people hold a phone to photograph the street at their feet: camera 1.2-1.8 m above the
# ground (chest to eye height; soft edges), with a broad tail (0.3-5 m, log-uniform) so that a
# camera on a pole, a kerb or a van is believed when the device says so.
HANDHELD_HEIGHT_M = (1.2, 1.8)
HANDHELD_EDGE_M = 0.05
HANDHELD_WEIGHT = 0.85
HEIGHT_PRIOR_RANGE_M = (0.3, 5.0)
PROPOSALS_PER_SAMPLE = 8

# Relative (log-normal) focal-length uncertainty by where the focal length came from.
FOCAL_SIGMA_REL = {"exif-35mm": 0.0, "exif-focal+model": 0.03, "default": 0.25}

# Phone lenses by EXIF Model: (focal length mm, 35 mm equivalent mm) per camera, approximate
# manufacturer figures. Phones nearly always write FocalLengthIn35mmFilm themselves; this only
# rescues files where an editor kept FocalLength but dropped the equivalent.
PHONE_LENSES: dict[str, tuple[tuple[float, float], ...]] = {
    "iPhone 11": ((4.25, 26.0), (1.54, 13.0)),
    "iPhone 12": ((4.2, 26.0), (1.55, 13.0)),
    "iPhone 13": ((5.1, 26.0), (1.54, 13.0)),
    "iPhone 14 Pro": ((6.86, 24.0), (2.22, 13.0), (9.0, 77.0)),
    "iPhone 15 Pro": ((6.765, 24.0), (2.22, 13.0), (9.0, 77.0)),
    "Pixel 6": ((6.81, 25.0), (2.0, 16.0)),
    "Pixel 7": ((6.81, 25.0), (1.95, 16.0)),
    "SM-G991B": ((5.4, 26.0), (2.2, 13.0)),  # Galaxy S21
    "SM-S911B": ((6.3, 23.0), (2.2, 13.0), (6.9, 69.0)),  # Galaxy S23
}
_LENS_MATCH_REL = 0.1


@dataclass(frozen=True)
class Pose:
    """Camera height above the surface and its tilt, each with a 1-sigma uncertainty."""

    height_m: float = 1.5
    pitch_deg: float = 45.0  # optical axis below horizontal; 90 = straight down
    roll_deg: float = 0.0
    height_sigma_m: float = 0.25
    pitch_sigma_deg: float = 12.0
    roll_sigma_deg: float = 5.0
    source: str = "default"  # 'default' (hand-held guesses), 'device' (phone sensors), 'user'

    def __post_init__(self) -> None:
        limits = {
            "height_m": (0.05, 100.0),
            "pitch_deg": (-90.0, 90.0),
            "roll_deg": (-180.0, 180.0),
            "height_sigma_m": (0.0, 10.0),
            "pitch_sigma_deg": (0.0, 45.0),
            "roll_sigma_deg": (0.0, 45.0),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise InvalidArgument(f"Pose.{name} must be a finite number, got {value!r}")
            if not lo <= value <= hi:
                raise InvalidArgument(f"Pose.{name} must be in [{lo}, {hi}], got {value}")
        if not self.source:
            raise InvalidArgument("Pose.source must say where the pose came from")

    @classmethod
    def default(cls) -> Pose:
        """A phone held at chest height, tilted down at the ground ahead: wide uncertainty."""
        return cls()


def intrinsics(capture: Capture) -> tuple[float, float, float, str]:
    """(fx_px, cx, cy, source) for the full-size oriented image; square pixels assumed."""
    w, h = capture.width_px, capture.height_px
    diag_px = math.hypot(w, h)
    cx, cy = w / 2.0, h / 2.0
    f35 = capture.focal_length_35mm
    if f35 is not None and math.isfinite(f35) and 4.0 <= f35 <= 2000.0:
        return f35 * diag_px / DIAGONAL_35MM, cx, cy, "exif-35mm"
    f_mm = capture.focal_length_mm
    lenses = PHONE_LENSES.get((capture.model or "").strip())
    if f_mm is not None and lenses:
        best = min(lenses, key=lambda lens: abs(lens[0] - f_mm))
        if abs(best[0] - f_mm) <= _LENS_MATCH_REL * best[0]:
            f35_equiv = f_mm * best[1] / best[0]
            return f35_equiv * diag_px / DIAGONAL_35MM, cx, cy, "exif-focal+model"
    return DEFAULT_FOCAL_35MM * diag_px / DIAGONAL_35MM, cx, cy, "default"


def measure_polygon(
    polygon_px: np.ndarray,
    capture: Capture,
    *,
    surface: Literal["ground", "wall"] = "ground",
    pose: Pose | None = None,
    wall_distance_m: float | None = None,
    wall_distance_sigma_m: float | None = None,
    samples: int = 256,
    seed: int = 0,
    tilt: TiltReading | None = None,
) -> Measurement:
    """Area, length and width in metres (median, 5-95% interval) of an outline in the photo.

    polygon_px is in the full-size oriented image frame. On the ground the camera pose (default:
    Pose.default()) is sampled; samples whose outline reaches the horizon (or beyond 60 m) are
    dropped, and if more than 20% are dropped the result is pixels-only. On a wall the wall is
    taken as facing the camera at wall_distance_m (default 4 +- 2 m; a given distance without
    a sigma gets 25% of it).

    The pose is a posterior, not a point: a measured pose (source other than 'default') is
    fused with how people hold phones (HANDHELD_HEIGHT_M), and on the ground with what the
    photo's texture says about the tilt (`tilt`, vision/measure_tilt.py) when given.
    """
    if surface not in ("ground", "wall"):
        raise InvalidArgument(f"surface must be 'ground' or 'wall', got {surface!r}")
    if not isinstance(samples, int) or not 1 <= samples <= 100_000:
        raise InvalidArgument(f"samples must be an int in [1, 100000], got {samples!r}")
    wall = _wall_prior(wall_distance_m, wall_distance_sigma_m)
    poly = np.asarray(polygon_px, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(poly).all():
        return _pixels_only(0.0, None, "the outline has non-finite coordinates; nothing measured")
    area_px = abs(_shoelace(poly))
    if len(poly) < 3:
        return _pixels_only(0.0, None, f"the outline has {len(poly)} points; 3 are needed")
    if area_px < 1e-9:
        return _pixels_only(0.0, None, "the outline encloses no area (its points are collinear)")

    fx, cx, cy, focal_source = intrinsics(capture)
    rng = np.random.default_rng(seed)
    f = fx * np.exp(rng.normal(0.0, FOCAL_SIGMA_REL[focal_source], samples))
    focal_note = _focal_note(capture, focal_source)
    pose = pose or Pose.default()
    if surface == "ground":
        return _ground(poly, area_px, (f, cx, cy), pose, rng, focal_note, samples, tilt)
    return _wall(poly, area_px, (f, cx, cy), pose, wall, rng, focal_note)


def _wall_prior(distance: float | None, sigma: float | None) -> tuple[float, float, str]:
    """(distance, sigma, note) of the wall; validated even when the outline is unusable."""
    if distance is None:
        distance = DEFAULT_WALL_DISTANCE_M
        sigma = DEFAULT_WALL_DISTANCE_SIGMA_M if sigma is None else sigma
        origin = "default guess"
    else:
        if not math.isfinite(distance) or distance < MIN_WALL_DISTANCE_M:
            raise InvalidArgument(
                f"wall_distance_m must be at least {MIN_WALL_DISTANCE_M} m, got {distance}"
            )
        sigma = 0.25 * distance if sigma is None else sigma
        origin = "given"
    if not math.isfinite(sigma) or sigma < 0:
        raise InvalidArgument(f"wall_distance_sigma_m must be >= 0, got {sigma}")
    return distance, sigma, f"{distance:g} +- {sigma:g} m ({origin})"


def _ground(
    poly: np.ndarray,
    area_px: float,
    cam: tuple[np.ndarray, float, float],
    pose: Pose,
    rng: np.random.Generator,
    focal_note: str,
    n: int,
    tilt: TiltReading | None = None,
) -> Measurement:
    f, cx, cy = cam
    height, height_note = _height_posterior(rng, pose, n)
    pitch_deg, roll_deg, tilt_note = _tilt_posterior(rng, pose, tilt, n)
    pitch, roll = np.radians(pitch_deg), np.radians(roll_deg)
    xw, yw, zw = _world_rays(poly, f, cx, cy, pitch, roll)  # each (n, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = height[:, None] / -zw
        gx, gy = t * xw, t * yw
    ok = (zw < -1e-9) & np.isfinite(gx) & np.isfinite(gy) & (np.hypot(gx, gy) <= MAX_GROUND_RANGE_M)
    valid = ok.all(axis=1)
    pose_note = (
        f"camera {pose.height_m:g} +- {pose.height_sigma_m:g} m above flat ground, optical axis "
        f"{pose.pitch_deg:g} +- {pose.pitch_sigma_deg:g} deg below horizontal, roll "
        f"{pose.roll_deg:g} +- {pose.roll_sigma_deg:g} deg (pose: {pose.source})"
        f"{height_note}{tilt_note}"
    )
    n_valid = int(valid.sum())
    if n_valid < MIN_VALID_FRACTION * n:
        return _pixels_only(
            area_px,
            _bearing(poly, f, cx, cy, pitch, roll),
            f"not measured: part of the outline is at or above the horizon, or more than "
            f"{MAX_GROUND_RANGE_M:g} m away, in {n - n_valid} of {n} samples of the assumed pose "
            f"({pose_note}); a photo tilted further down at the object can be measured",
        )
    pts = np.stack([gx[valid], gy[valid]], axis=-1)  # (n_valid, K, 2) metres
    area, length, width, centroid = _shape_stats(pts)
    distance = np.hypot(centroid[:, 0], centroid[:, 1])
    bearing = float(np.degrees(np.median(np.arctan2(centroid[:, 0], centroid[:, 1]))))
    dropped = n - n_valid
    drop_note = (
        f"; {dropped} of {n} samples reached the horizon and were dropped" if dropped else ""
    )
    return _metric(
        "ground-plane",
        area_px,
        area,
        length,
        width,
        distance,
        bearing,
        f"ground-plane: the object lies on flat ground; {pose_note}; {focal_note}; "
        f"medians of {n_valid} samples, 5-95% intervals{drop_note}",
    )


def _wall(
    poly: np.ndarray,
    area_px: float,
    cam: tuple[np.ndarray, float, float],
    pose: Pose,
    wall: tuple[float, float, str],
    rng: np.random.Generator,
    focal_note: str,
) -> Measurement:
    f, cx, cy = cam
    n = len(f)
    dist, dist_sigma, dist_note = wall
    d = _truncated_normal(rng, dist, dist_sigma, MIN_WALL_DISTANCE_M, 1000.0, n)
    roll = np.radians(rng.normal(pose.roll_deg, pose.roll_sigma_deg, n))
    # A wall facing the camera is a plane at depth d: metres = pixels * d / f.
    k = (d / f)[:, None, None]
    pts = (poly - [cx, cy])[None] * k  # (n, K, 2)
    area, length, width, centroid = _shape_stats(pts)
    # Un-roll the centroid so "right" means horizontally right, not along the tilted image x.
    right = centroid[:, 0] * np.cos(roll) + centroid[:, 1] * np.sin(roll)
    distance = np.hypot(d, right)
    bearing = float(np.degrees(np.median(np.arctan2(right, d))))
    return _metric(
        "wall-distance",
        area_px,
        area,
        length,
        width,
        distance,
        bearing,
        f"wall-distance: the object is on a flat wall facing the camera at {dist_note}; "
        f"roll {pose.roll_deg:g} +- {pose.roll_sigma_deg:g} deg (pose: {pose.source}); "
        f"{focal_note}; medians of {n} samples, 5-95% intervals",
    )


def handheld_height_prior(h: np.ndarray) -> np.ndarray:
    """Prior density (unnormalised) of a hand-held camera's height above the ground, metres."""
    lo, hi = HANDHELD_HEIGHT_M
    h = np.asarray(h, float)
    with np.errstate(over="ignore"):
        box = 1.0 / (
            (1.0 + np.exp((lo - h) / HANDHELD_EDGE_M)) * (1.0 + np.exp((h - hi) / HANDHELD_EDGE_M))
        )
    a, b = HEIGHT_PRIOR_RANGE_M
    tail = np.where((h >= a) & (h <= b), 1.0 / (np.maximum(h, 1e-9) * math.log(b / a)), 0.0)
    return HANDHELD_WEIGHT * box / (hi - lo) + (1.0 - HANDHELD_WEIGHT) * tail


def _height_posterior(rng: np.random.Generator, pose: Pose, n: int) -> tuple[np.ndarray, str]:
    """Camera heights drawn from the reading's Gaussian times the hand-held prior.

    The default pose is itself the hand-held guess, and an exact reading needs no prior; both
    are drawn as given. Otherwise: sampling-importance-resampling from the reading.
    """
    if pose.source == "default" or pose.height_sigma_m == 0.0:
        return _truncated_normal(rng, pose.height_m, pose.height_sigma_m, 0.05, 100.0, n), ""
    m = PROPOSALS_PER_SAMPLE * n
    prop = _truncated_normal(rng, pose.height_m, pose.height_sigma_m, 0.05, 100.0, m)
    w = handheld_height_prior(prop)
    if not np.isfinite(w).all() or w.sum() <= 0:
        return prop[:n], ""
    h = rng.choice(prop, size=n, p=w / w.sum())
    lo, mid, hi = np.percentile(h, [5, 50, 95])
    return h, (
        f"; height {mid:.2f} m ({lo:.2f}-{hi:.2f}) after the reading is weighed with how people "
        f"hold phones ({HANDHELD_HEIGHT_M[0]:g}-{HANDHELD_HEIGHT_M[1]:g} m, a broad tail beyond)"
    )


def _tilt_posterior(
    rng: np.random.Generator, pose: Pose, tilt: TiltReading | None, n: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Pitch and roll samples (degrees): the pose's Gaussian, times the photo's reading if any."""
    pitch = _truncated_normal(rng, pose.pitch_deg, pose.pitch_sigma_deg, -90, 90, n)
    roll = rng.normal(pose.roll_deg, pose.roll_sigma_deg, n)
    if tilt is None or pose.pitch_sigma_deg == 0.0 or pose.roll_sigma_deg == 0.0:
        return pitch, roll, ""
    p, r = np.meshgrid(tilt.pitch_deg, tilt.roll_deg, indexing="ij")
    logpost = (
        tilt.loglik
        - 0.5 * ((p - pose.pitch_deg) / pose.pitch_sigma_deg) ** 2
        - 0.5 * ((r - pose.roll_deg) / pose.roll_sigma_deg) ** 2
    )
    if not np.isfinite(logpost).any():
        return pitch, roll, ""
    w = np.exp(logpost - np.nanmax(logpost)).ravel()
    w = np.where(np.isfinite(w), w, 0.0)
    cell = rng.choice(len(w), size=n, p=w / w.sum())
    dp = tilt.pitch_deg[1] - tilt.pitch_deg[0] if len(tilt.pitch_deg) > 1 else 0.0
    dr = tilt.roll_deg[1] - tilt.roll_deg[0] if len(tilt.roll_deg) > 1 else 0.0
    pitch = np.clip(p.ravel()[cell] + rng.uniform(-dp / 2, dp / 2, n), -90, 90)
    roll = r.ravel()[cell] + rng.uniform(-dr / 2, dr / 2, n)
    return (
        pitch,
        roll,
        (
            f"; the photo's road texture ({tilt.blocks} blocks) refines the tilt to pitch "
            f"{np.median(pitch):.1f} +- {np.std(pitch):.1f} deg, roll {np.median(roll):.1f} +- "
            f"{np.std(roll):.1f} deg"
        ),
    )


def _world_rays(
    pts: np.ndarray, f: np.ndarray, cx: float, cy: float, pitch: np.ndarray, roll: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-frame directions (X, Y, Z), each (n, K), of the rays through pixel points."""
    x = (pts[None, :, 0] - cx) / f[:, None]
    y = (pts[None, :, 1] - cy) / f[:, None]
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    xl, yl = cr * x - sr * y, sr * x + cr * y  # undo roll: the camera frame levelled
    cp, sp = np.cos(pitch)[:, None], np.sin(pitch)[:, None]
    # Levelled camera axes in the world: x -> (1,0,0), y(down) -> (0,-sin,-cos), z -> (0,cos,-sin)
    return xl, -yl * sp + cp, -yl * cp - sp


def _bearing(
    poly: np.ndarray, f: np.ndarray, cx: float, cy: float, pitch: np.ndarray, roll: np.ndarray
) -> float:
    """Median horizontal angle right of the optical axis of the ray through the pixel centroid."""
    c = _centroid(poly[None])[0][None]
    xw, yw, _ = _world_rays(c, f, cx, cy, pitch, roll)
    return float(np.degrees(np.median(np.arctan2(xw[:, 0], yw[:, 0]))))


def _shape_stats(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Area, rectangle length/width and centroid of each sample's polygon ((n, K, 2) metres)."""
    area = np.abs(_shoelace_batch(pts))
    length = np.empty(len(pts))
    width = np.empty(len(pts))
    for i, p in enumerate(pts):
        _, (a, b), _ = cv2.minAreaRect(p.astype(np.float32))
        length[i], width[i] = max(a, b), min(a, b)
    return area, length, width, _centroid(pts)


def _shoelace(p: np.ndarray) -> float:
    return float(_shoelace_batch(p[None])[0])


def _shoelace_batch(p: np.ndarray) -> np.ndarray:
    x, y = p[..., 0], p[..., 1]
    return 0.5 * (x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y).sum(axis=-1)


def _centroid(p: np.ndarray) -> np.ndarray:
    """Area centroid of each polygon in (n, K, 2); the vertex mean where the area vanishes."""
    x, y = p[..., 0], p[..., 1]
    x1, y1 = np.roll(x, -1, axis=-1), np.roll(y, -1, axis=-1)
    cross = x * y1 - x1 * y
    a = cross.sum(axis=-1)
    mean = p.mean(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        moments = np.stack([((x + x1) * cross).sum(-1), ((y + y1) * cross).sum(-1)], -1)
        c = moments / (3 * a[:, None])
    flat = np.abs(a) < 1e-12 * np.maximum(1.0, (p**2).sum(axis=(-1, -2)))
    return np.where(flat[:, None] | ~np.isfinite(c), mean, c)


def _truncated_normal(
    rng: np.random.Generator, mean: float, sigma: float, lo: float, hi: float, n: int
) -> np.ndarray:
    """Normal samples redrawn until inside [lo, hi] (a few rounds, then clipped)."""
    x = rng.normal(mean, sigma, n)
    for _ in range(20):
        bad = (x < lo) | (x > hi)
        if not bad.any():
            break
        x[bad] = rng.normal(mean, sigma, int(bad.sum()))
    return np.clip(x, lo, hi)


def _interval(v: np.ndarray) -> tuple[float, tuple[float, float]]:
    lo, mid, hi = np.percentile(v, [5, 50, 95])
    return float(mid), (float(lo), float(hi))


def _metric(
    method: MeasureMethod,
    area_px: float,
    area: np.ndarray,
    length: np.ndarray,
    width: np.ndarray,
    distance: np.ndarray,
    bearing: float,
    assumptions: str,
) -> Measurement:
    area_m2, area_iv = _interval(area)
    length_m, length_iv = _interval(length)
    width_m, width_iv = _interval(width)
    dist_m, dist_iv = _interval(distance)
    return Measurement(
        method=method,
        area_px=area_px,
        area_m2=area_m2,
        area_m2_interval=area_iv,
        length_m=length_m,
        length_m_interval=length_iv,
        width_m=width_m,
        width_m_interval=width_iv,
        distance_m=dist_m,
        distance_m_interval=dist_iv,
        bearing_offset_deg=bearing if math.isfinite(bearing) else None,
        assumptions=assumptions,
    )


def _pixels_only(area_px: float, bearing: float | None, reason: str) -> Measurement:
    if bearing is not None and not math.isfinite(bearing):
        bearing = None
    return Measurement(
        method="pixels-only", area_px=area_px, bearing_offset_deg=bearing, assumptions=reason
    )


def _focal_note(capture: Capture, source: str) -> str:
    if source == "exif-35mm":
        return f"focal length {capture.focal_length_35mm:g} mm-equivalent (focal: EXIF)"
    if source == "exif-focal+model":
        return (
            f"focal length {capture.focal_length_mm:g} mm on a {capture.model} "
            "(focal: EXIF focal length and a table of phone lenses, +-3%)"
        )
    return (
        f"focal length {DEFAULT_FOCAL_35MM:g} mm-equivalent, a typical phone main camera "
        "(focal: default, not in EXIF, +-25%)"
    )

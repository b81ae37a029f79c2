"""Pick the best honest measurement: marker, then user-scale, then the pose's geometry.

A method that cannot answer says why (NotMeasurable); that reason leads the assumptions of the
method that did answer, so a reader sees why the card or the marks were not used.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from vision.errors import InvalidArgument, NotMeasurable
from vision.marker import MarkerSighting, measure_on_marker
from vision.measure import Pose, _pixels_only, _shoelace, intrinsics, measure_polygon
from vision.measure_scale import ScaleBar, measure_with_scale
from vision.measure_tilt import read_tilt
from vision.types import Capture, Measurement


def measure_best(
    polygon_px: np.ndarray,
    capture: Capture,
    *,
    surface: Literal["ground", "wall"] = "ground",
    pose: Pose | None = None,
    marker: MarkerSighting | None = None,
    scale: ScaleBar | None = None,
    notes: tuple[str, ...] = (),
    wall_distance_m: float | None = None,
    samples: int = 256,
    seed: int = 0,
    rgb: np.ndarray | None = None,
) -> Measurement:
    """The first method that can measure the outline: marker, user-scale, ground/wall, pixels.

    rgb, the photo (full size or a downscaled copy), lets the ground plane read the camera's
    tilt off the road's texture and fuse it with the pose (vision/measure_tilt.py).
    """
    if surface not in ("ground", "wall"):
        raise InvalidArgument(f"surface must be 'ground' or 'wall', got {surface!r}")
    if not isinstance(samples, int) or not 1 <= samples <= 100_000:
        raise InvalidArgument(f"samples must be an int in [1, 100000], got {samples!r}")
    poly = np.asarray(polygon_px, dtype=np.float64).reshape(-1, 2)
    why = list(notes)
    usable = len(poly) >= 3 and np.isfinite(poly).all() and abs(_shoelace(poly)) > 1e-9
    if usable and marker is not None:
        try:
            return _lead(
                measure_on_marker(
                    poly, marker, capture, surface=surface, pose=pose, samples=samples, seed=seed
                ),
                why,
            )
        except NotMeasurable as exc:
            why.append(f"marker not used: {exc}")
    if usable and scale is not None:
        try:
            return _lead(
                measure_with_scale(
                    poly, scale, capture, surface=surface, pose=pose, samples=samples, seed=seed
                ),
                why,
            )
        except NotMeasurable as exc:
            why.append(f"scale not used: {exc}")
    if not usable and not np.isfinite(poly).all():
        return _lead(_pixels_only(0.0, None, "the outline has non-finite coordinates"), why)
    tilt = None
    measured_tilt = pose is None or pose.pitch_sigma_deg > 0 or pose.roll_sigma_deg > 0
    if usable and surface == "ground" and rgb is not None and measured_tilt:
        card = [] if marker is None else [np.asarray(marker.corners_px, float)]
        tilt = read_tilt(
            rgb,
            intrinsics(capture)[0],
            (capture.width_px, capture.height_px),
            pose or Pose.default(),
            [poly, *card],
        )
    m = measure_polygon(
        poly,
        capture,
        surface=surface,
        pose=pose,
        wall_distance_m=wall_distance_m,
        samples=samples,
        seed=seed,
        tilt=tilt,
    )
    return _lead(m, why)


def _lead(m: Measurement, why: list[str]) -> Measurement:
    """The measurement with the reasons other methods gave up in front of its assumptions."""
    if not why:
        return m
    return dataclasses.replace(m, assumptions="; ".join([*why, m.assumptions]))

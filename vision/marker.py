"""The crew marker card: find it in a photo and measure an outline on the plane it lies on.

The card (docs/marker-card.md): ArUco dictionary DICT_4X4_50, id 0, the black square printed
150 mm a side. Four corners of a known square give the plane's homography directly, with no
camera pose, height or focal length; the interval comes from re-solving with the corners
jittered by their localisation error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.camera import intrinsic_matrix, world_from_camera
from vision.errors import InvalidArgument, NotMeasurable
from vision.measure import (
    FOCAL_SIGMA_REL,
    Pose,
    _focal_note,
    _metric,
    _shape_stats,
    _shoelace,
    intrinsics,
)
from vision.types import Capture, Measurement

DICTIONARY = cv2.aruco.DICT_4X4_50
DICTIONARY_NAME = "DICT_4X4_50"
MARKER_ID = 0
MARKER_SIDE_M = 0.150
MIN_CORNER_SIGMA_PX = 0.5  # sub-pixel refinement is no better than this on a JPEG
MIN_SIDE_PX = 12.0  # below this the corners are too coarse to fix a plane
MIN_FORESHORTENING = 0.12  # quad area / longest side^2: an edge-on card gives a sliver
MAX_VIEW_ANGLE_DEG = 80.0  # between the line of sight and the card's normal
MIN_PLANE_TOL_DEG = 20.0  # card plane vs the pose's surface: phone tilt sensors and a bumpy road
MAX_RANGE_M = 30.0  # beyond this from the card the extrapolated plane is not to be trusted
MIN_VALID_FRACTION = 0.8


@dataclass(frozen=True)
class MarkerSighting:
    """A marker's corners (TL, TR, BR, BL as printed) in the full-size oriented image."""

    corners_px: np.ndarray  # (4, 2)
    marker_id: int = MARKER_ID
    side_m: float = MARKER_SIDE_M
    sigma_px: float = MIN_CORNER_SIGMA_PX  # 1-sigma corner error in full-size pixels


def marker_image(cell_px: int = 40, margin_cells: int = 1) -> np.ndarray:
    """The printable marker (uint8, white margin of margin_cells around the 6x6-cell square)."""
    d = cv2.aruco.getPredefinedDictionary(DICTIONARY)
    img = cv2.aruco.generateImageMarker(d, MARKER_ID, 6 * cell_px)
    m = margin_cells * cell_px
    return cv2.copyMakeBorder(img, m, m, m, m, cv2.BORDER_CONSTANT, value=255)


def find_marker(
    rgb: np.ndarray,
    *,
    scale: float = 1.0,
    marker_id: int = MARKER_ID,
    side_m: float = MARKER_SIDE_M,
) -> MarkerSighting | None:
    """The crew card in an RGB image decoded at `scale` of full size, or None when not seen."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InvalidArgument(f"find_marker needs an (H, W, 3) uint8 image, got {rgb.shape}")
    if not 0 < scale <= 1.0:
        raise InvalidArgument(f"scale must be in (0, 1], got {scale}")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(DICTIONARY), params)
    corners, ids, _ = detector.detectMarkers(gray)
    if ids is None:
        return None
    for c, i in zip(corners, ids.reshape(-1), strict=True):
        if int(i) == marker_id:
            return MarkerSighting(
                # OpenCV puts pixel centres at integers; measure.py at half-integers.
                corners_px=(c.reshape(4, 2).astype(np.float64) + 0.5) / scale,
                marker_id=marker_id,
                side_m=side_m,
                sigma_px=MIN_CORNER_SIGMA_PX / scale,
            )
    return None


def measure_on_marker(
    poly: np.ndarray,
    sighting: MarkerSighting,
    capture: Capture,
    *,
    surface: str = "ground",
    pose: Pose | None = None,
    samples: int = 256,
    seed: int = 0,
) -> Measurement:
    """Area, length, width of an outline on the marker's plane; NotMeasurable when unsound.

    With a measured pose (source not 'default'), a card whose plane disagrees with the
    surface's (not flat on the ground, not upright on a wall) is refused: wrong plane.
    """
    corners = np.asarray(sighting.corners_px, np.float64).reshape(-1, 2)
    if corners.shape != (4, 2) or not np.isfinite(corners).all():
        raise InvalidArgument("a marker sighting needs 4 finite corners")
    if not (math.isfinite(sighting.side_m) and sighting.side_m > 0):
        raise InvalidArgument(f"marker side must be > 0 m, got {sighting.side_m}")
    poly = np.asarray(poly, np.float64).reshape(-1, 2)
    side = sighting.side_m
    sides = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
    quad_area = abs(_shoelace(corners))
    if sides.min() < MIN_SIDE_PX:
        raise NotMeasurable(
            f"the marker is only {sides.min():.0f} px on its shortest side (needs "
            f"{MIN_SIDE_PX:g}); step closer or put the card nearer the camera"
        )
    if quad_area / sides.max() ** 2 < MIN_FORESHORTENING or not _convex(corners):
        raise NotMeasurable("the marker is seen nearly edge-on; its plane cannot be fixed")
    plane = np.array([[0.0, 0.0], [side, 0.0], [side, side], [0.0, side]])
    fx, cx, cy, focal_source = intrinsics(capture)
    k = intrinsic_matrix(fx, cx, cy)
    obj = np.c_[plane, np.zeros(4)]
    ok, rvec, tvec = _solve(obj, corners, k)
    if not ok:
        raise NotMeasurable("the marker's corners fit no camera pose")
    reproj, _ = cv2.projectPoints(obj, rvec, tvec, k, None)
    rms = float(np.sqrt(((reproj.reshape(4, 2) - corners) ** 2).sum(1).mean()))
    rot, _ = cv2.Rodrigues(rvec)
    view = float(np.degrees(np.arccos(min(1.0, abs(rot[2, 2])))))
    if view > MAX_VIEW_ANGLE_DEG:
        raise NotMeasurable(
            f"the marker is seen {view:.0f} deg off its face (at most {MAX_VIEW_ANGLE_DEG:g}); "
            "it is nearly edge-on"
        )
    if pose is not None and pose.source != "default":  # a guessed pose cannot overrule the card
        _check_plane(rot, pose, surface)
    # The corner error: what sub-pixel refinement promises, or what the square's fit shows.
    sigma = max(sighting.sigma_px, rms)
    rng = np.random.default_rng(seed)
    src = corners[None] + rng.normal(0.0, sigma, (samples, 4, 2))
    src[0] = corners  # the first sample is the unperturbed solve
    f = fx * np.exp(rng.normal(0.0, FOCAL_SIGMA_REL[focal_source], samples))
    pts = np.full((samples, len(poly), 2), np.nan)
    cams = np.full((samples, 3), np.nan)
    for i in range(samples):
        # A calibrated pose (6 unknowns) rather than a free homography (8): far steadier when
        # a small card is seen nearly face-on and the outline lies a metre away.
        k_i = intrinsic_matrix(f[i], cx, cy)
        found, rv, tv = _solve(obj, src[i], k_i)
        if found:
            pts[i], cams[i] = _on_plane(poly, k_i, rv, tv)
    valid = np.isfinite(pts).all(axis=(1, 2))
    reach = np.linalg.norm(pts - plane.mean(0), axis=-1).max(axis=-1)
    valid[valid] &= reach[valid] <= MAX_RANGE_M
    if valid.sum() < MIN_VALID_FRACTION * samples:
        raise NotMeasurable(
            "the outline reaches the marker plane's horizon, or lies more than "
            f"{MAX_RANGE_M:g} m from the card, in {samples - int(valid.sum())} of {samples} "
            "re-solves"
        )
    pts = pts[valid]
    area, length, width, centroid = _shape_stats(pts)
    distance, bearing = _where(cams[valid], rot, tvec.reshape(3), centroid, surface)
    return _metric(
        "marker",
        abs(_shoelace(poly)),
        area,
        length,
        width,
        distance,
        bearing,
        f"marker: ArUco {DICTIONARY_NAME} id {sighting.marker_id}, {side * 1000:g} mm, lying on "
        f"the object's plane ({'ground' if surface == 'ground' else 'wall'}); corners "
        f"re-solved {len(pts)} times with {sigma:.2f} px noise (fit rms {rms:.2f} px); "
        f"seen {view:.0f} deg off its face; {_focal_note(capture, focal_source)}; "
        "medians, 5-95% intervals",
    )


def _check_plane(rot: np.ndarray, pose: Pose, surface: str) -> None:
    """Refuse a card whose plane is not the surface's, as far as the pose can tell."""
    up = world_from_camera(pose.pitch_deg, pose.roll_deg)[2]  # world up, in camera axes
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(up @ rot[:, 2]))))))
    off = tilt if surface == "ground" else 90.0 - tilt  # ground: normal up; wall: horizontal
    tol = max(MIN_PLANE_TOL_DEG, 3.0 * math.hypot(pose.pitch_sigma_deg, pose.roll_sigma_deg))
    if off > tol:
        where = "lying flat on the ground" if surface == "ground" else "on an upright wall"
        raise NotMeasurable(
            f"the card's plane is {off:.0f} deg off the {surface} the pose implies (tolerance "
            f"{tol:.0f} deg): it is not {where} with the object"
        )


def _solve(
    obj: np.ndarray, corners: np.ndarray, k: np.ndarray
) -> tuple[bool, np.ndarray, np.ndarray]:
    """The card's pose (IPPE, for planar targets); (False, ...) where OpenCV finds none."""
    try:
        ok, rvec, tvec = cv2.solvePnP(obj, corners, k, None, flags=cv2.SOLVEPNP_IPPE)
    except cv2.error:  # a jittered quad can fold into a degenerate one
        return False, np.zeros(3), np.zeros(3)
    return bool(ok), rvec, tvec


def _on_plane(
    poly: np.ndarray, k: np.ndarray, rvec: np.ndarray, tvec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Outline pixels on the marker's plane (NaN where a ray misses it) and the camera centre."""
    rot, _ = cv2.Rodrigues(rvec)
    cam = -rot.T @ tvec.reshape(3)  # the camera centre in the marker's frame
    rays = (np.c_[poly, np.ones(len(poly))] @ np.linalg.inv(k).T) @ rot  # R^T d, row-wise
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = -cam[2] / rays[:, 2]
    hit = cam[None] + lam[:, None] * rays
    hit[~(lam > 0)] = np.nan  # a ray at or above the plane's horizon never meets it
    return hit[:, :2], cam


def _where(
    cams: np.ndarray, rot: np.ndarray, t: np.ndarray, centroid_m: np.ndarray, surface: str
) -> tuple[np.ndarray, float]:
    """Distance (per sample) and bearing of the object from the camera, via the marker's pose."""
    obj = np.c_[centroid_m, np.zeros(len(centroid_m))]
    d = obj - cams
    # On the ground: distance along the ground (the geo convention); on a wall: straight line.
    distance = np.hypot(d[:, 0], d[:, 1]) if surface == "ground" else np.linalg.norm(d, axis=1)
    in_cam = obj @ rot.T + t
    bearing = float(np.degrees(np.median(np.arctan2(in_cam[:, 0], in_cam[:, 2]))))
    return distance, bearing


def _convex(q: np.ndarray) -> bool:
    """Whether a quadrilateral turns the same way at every corner."""
    d = np.roll(q, -1, 0) - q
    cross = d[:, 0] * np.roll(d, -1, 0)[:, 1] - d[:, 1] * np.roll(d, -1, 0)[:, 0]
    return bool((cross > 0).all() or (cross < 0).all())


def write_card(folder: Path) -> tuple[Path, Path]:
    """Write the printable card (A4, 1:1 scale) as marker-card.png and marker-card.pdf."""
    from PIL import Image, ImageDraw, ImageFont

    cell_px = 300
    dpi = cell_px / (MARKER_SIDE_M * 1000 / 6) * 25.4  # 300 px per 25 mm cell: 304.8 dpi
    page = Image.new("L", (round(210 / 25.4 * dpi), round(297 / 25.4 * dpi)), 255)
    card = Image.fromarray(marker_image(cell_px, 1))
    x0 = (page.width - card.width) // 2
    page.paste(card, (x0, cell_px))
    draw = ImageDraw.Draw(page)
    # A dashed cut line around the white margin: the card is cut out along it.
    for i in range(0, card.width, 40):
        for a, b in (((i, 0), (i + 20, 0)), ((0, i), (0, i + 20))):
            for dx, dy in ((0, 0), (0, card.height) if a[1] == 0 else (card.width, 0)):
                draw.line(
                    [(x0 + a[0] + dx, cell_px + a[1] + dy), (x0 + b[0] + dx, cell_px + b[1] + dy)],
                    fill=0,
                    width=3,
                )
    font = ImageFont.load_default(size=70)
    lines = [
        "StreetLens crew marker card",
        f"ArUco {DICTIONARY_NAME}, id {MARKER_ID}",
        f"black square: {MARKER_SIDE_M * 1000:g} mm a side (check with a ruler)",
        "print at 100% (no 'fit to page'); lay flat beside the defect",
    ]
    y = cell_px * 2 + card.height
    for line in lines:
        draw.text((x0, y), line, fill=0, font=font)
        y += 110
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf = folder / "marker-card.png", folder / "marker-card.pdf"
    page.convert("1").save(png, dpi=(dpi, dpi), optimize=True)
    page.convert("1").save(pdf, resolution=dpi)
    return png, pdf


if __name__ == "__main__":  # python -m vision.marker docs/
    import sys

    for p in write_card(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(p)

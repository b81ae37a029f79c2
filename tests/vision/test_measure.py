"""Metric measurement: synthetic cameras photograph known shapes; we measure them back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vision.errors import InvalidArgument
from vision.measure import DIAGONAL_35MM, Pose, intrinsics, measure_polygon
from vision.types import Capture, Measurement

W, H = 4000, 3000
CAPTURE = Capture(W, H, focal_length_35mm=26.0)


def rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Right-handed rotation about an axis (Rodrigues): an implementation apart from measure's."""
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle_rad) * kx + (1 - math.cos(angle_rad)) * kx @ kx


def camera_to_world(pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Columns: the camera's x (right), y (down), z (optical axis) in the world (X, Y fwd, Z up)."""
    level = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # columns x->X, y->-Z, z->Y
    pitched = rotation(np.array([1.0, 0, 0]), -math.radians(pitch_deg)) @ level
    # Seen from behind the camera, turning about +axis by +roll is clockwise: the right edge dips.
    return rotation(pitched[:, 2], math.radians(roll_deg)) @ pitched


def photograph(
    points_xyz: np.ndarray, height: float, pitch: float, roll: float, capture: Capture = CAPTURE
) -> np.ndarray:
    """Pixel positions of world points for a camera at (0, 0, height)."""
    fx = capture.focal_length_35mm * math.hypot(capture.width_px, capture.height_px) / DIAGONAL_35MM
    r = camera_to_world(pitch, roll)
    cam = (points_xyz - [0.0, 0.0, height]) @ r  # world -> camera: R^T (P - C), row-wise
    assert (cam[:, 2] > 0).all(), "test shape must be in front of the camera"
    u = fx * cam[:, 0] / cam[:, 2] + capture.width_px / 2
    v = fx * cam[:, 1] / cam[:, 2] + capture.height_px / 2
    return np.stack([u, v], 1)


def ground_rect(x0: float, y0: float, length: float, width: float, angle_deg: float = 0.0):
    """A rectangle on the ground (Z=0), centred at (x0, y0), turned by angle_deg."""
    a = math.radians(angle_deg)
    u, v = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    xy = np.array([[x0, y0] + su * length / 2 * u + sv * width / 2 * v for su, sv in corners])
    return np.c_[xy, np.zeros(4)]


def exact(height: float, pitch: float, roll: float) -> Pose:
    return Pose(height, pitch, roll, 0.0, 0.0, 0.0, source="test")


def assert_finite(m: Measurement) -> None:
    for name, value in vars(m).items():
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, float):
                assert math.isfinite(v), f"{name} is {v}"


def test_camera_convention_of_the_test_matches_the_docs() -> None:
    r = camera_to_world(45, 10)
    assert r[2, 0] < 0  # positive roll: the camera's right edge dips
    assert r[2, 2] == pytest.approx(-math.sin(math.radians(45)))  # axis 45 deg below horizon


@pytest.mark.parametrize(
    ("height", "pitch", "roll", "rect"),
    [
        (1.5, 45.0, 0.0, (0.0, 2.0, 0.8, 0.6, 0.0)),
        (1.2, 60.0, 8.0, (0.4, 1.0, 0.5, 0.3, 30.0)),
        (1.8, 30.0, -10.0, (-0.8, 4.5, 1.2, 0.4, -15.0)),
        (1.6, 88.0, 3.0, (0.1, 0.2, 0.3, 0.3, 45.0)),
    ],
)
def test_exact_pose_recovers_ground_rectangle(height, pitch, roll, rect) -> None:
    x0, y0, length, width, _ = rect
    px = photograph(ground_rect(*rect), height, pitch, roll)
    m = measure_polygon(px, CAPTURE, pose=exact(height, pitch, roll))
    assert m.method == "ground-plane"
    assert m.area_m2 == pytest.approx(length * width, rel=0.01)
    assert m.length_m == pytest.approx(length, rel=0.01)
    assert m.width_m == pytest.approx(width, rel=0.01)
    assert m.distance_m == pytest.approx(math.hypot(x0, y0), rel=0.01)
    assert m.bearing_offset_deg == pytest.approx(math.degrees(math.atan2(x0, y0)), abs=0.2)
    lo, hi = m.area_m2_interval
    assert hi - lo < 1e-6 * m.area_m2  # no uncertainty given, none reported
    assert m.area_px > 0
    assert_finite(m)


def test_pixel_polygon_orientation_does_not_matter() -> None:
    px = photograph(ground_rect(0.2, 2.5, 0.6, 0.4), 1.5, 45, 0)
    a = measure_polygon(px, CAPTURE, pose=exact(1.5, 45, 0))
    b = measure_polygon(px[::-1], CAPTURE, pose=exact(1.5, 45, 0))
    assert a.area_m2 == pytest.approx(b.area_m2)


def test_default_sigmas_interval_contains_truth() -> None:
    height, pitch, roll = 1.4, 52.0, 4.0
    rect = (0.3, 1.8, 0.7, 0.5, 20.0)
    px = photograph(ground_rect(*rect), height, pitch, roll)
    m = measure_polygon(px, CAPTURE, pose=Pose(height, pitch, roll, source="device"))
    assert m.area_m2_interval[0] <= 0.35 <= m.area_m2_interval[1]
    assert m.length_m_interval[0] <= 0.7 <= m.length_m_interval[1]
    assert m.width_m_interval[0] <= 0.5 <= m.width_m_interval[1]
    assert m.distance_m_interval[0] <= math.hypot(0.3, 1.8) <= m.distance_m_interval[1]
    assert m.area_m2_interval[1] > 1.5 * m.area_m2_interval[0]  # 12 deg of pitch is a lot
    assert "pose: device" in m.assumptions and "focal: EXIF" in m.assumptions


def test_default_pose_interval_is_calibrated_over_plausible_photos() -> None:
    """Truths drawn from the default prior land in the 5-95% interval about 90% of the time."""
    rng = np.random.default_rng(7)
    prior = Pose.default()
    hits = trials = 0
    while trials < 40:
        height = rng.normal(prior.height_m, prior.height_sigma_m)
        pitch = rng.normal(prior.pitch_deg, prior.pitch_sigma_deg)
        roll = rng.normal(prior.roll_deg, prior.roll_sigma_deg)
        y = height / math.tan(math.radians(pitch))  # the patch sits near the image centre
        px = photograph(ground_rect(0.0, y, 0.4, 0.4), height, pitch, roll)
        m = measure_polygon(px, CAPTURE, seed=trials)
        if m.method != "ground-plane":
            continue
        trials += 1
        hits += m.area_m2_interval[0] <= 0.16 <= m.area_m2_interval[1]
    assert 0.75 <= hits / trials <= 1.0


def test_default_focal_is_stated_and_widens_interval() -> None:
    px = photograph(ground_rect(0.0, 2.0, 0.8, 0.6), 1.5, 45, 0)
    pose = Pose(1.5, 45, 0, 0.1, 3.0, 2.0, source="device")
    known = measure_polygon(px, CAPTURE, pose=pose)
    unknown = measure_polygon(px, Capture(W, H), pose=pose)  # no focal length in EXIF
    assert "focal: default" in unknown.assumptions
    assert spread(unknown) > 1.2 * spread(known)


def spread(m: Measurement) -> float:
    return m.area_m2_interval[1] / m.area_m2_interval[0]


def test_intrinsics_sources() -> None:
    fx, cx, cy, src = intrinsics(Capture(4000, 3000, focal_length_35mm=26.0))
    assert src == "exif-35mm"
    assert fx == pytest.approx(26.0 * 5000 / 43.27)
    assert (cx, cy) == (2000.0, 1500.0)
    portrait = intrinsics(Capture(3000, 4000, focal_length_35mm=26.0))
    assert portrait[0] == pytest.approx(fx) and portrait[1:3] == (1500.0, 2000.0)
    main = intrinsics(Capture(4032, 3024, model="iPhone 12", focal_length_mm=4.2))
    assert main[3] == "exif-focal+model"
    assert main[0] == pytest.approx(26.0 * math.hypot(4032, 3024) / 43.27, rel=0.01)
    wide = intrinsics(Capture(4032, 3024, model="iPhone 12", focal_length_mm=1.55))
    assert wide[0] == pytest.approx(main[0] / 2, rel=0.02)  # the 13 mm ultra-wide
    assert intrinsics(Capture(4032, 3024, model="iPhone 12", focal_length_mm=3.0))[3] == "default"
    assert intrinsics(Capture(4032, 3024, model="Unknown", focal_length_mm=4.2))[3] == "default"
    default = intrinsics(Capture(4000, 3000))
    assert default[3] == "default" and default[0] == pytest.approx(fx)  # 26 mm-equivalent


def test_outline_above_horizon_is_pixels_only() -> None:
    # Pitch 10 deg down: the horizon is 10 deg above centre; the top rows see the sky.
    sky = np.array([[1500.0, 50], [2500, 50], [2500, 250], [1500, 250]])
    m = measure_polygon(sky, CAPTURE, pose=exact(1.5, 10, 0))
    assert m.method == "pixels-only" and m.area_m2 is None
    assert "horizon" in m.assumptions
    assert m.area_px == pytest.approx(1000 * 200)
    assert m.bearing_offset_deg == pytest.approx(0.0, abs=1e-6)
    assert_finite(m)


def test_outline_crossing_horizon_is_pixels_only() -> None:
    fx = intrinsics(CAPTURE)[0]
    horizon_y = H / 2 - fx * math.tan(math.radians(20))
    crossing = np.array([[1800, horizon_y - 100], [2200, horizon_y - 100], [2200, horizon_y + 300]])
    m = measure_polygon(np.r_[crossing, [[1800, horizon_y + 300]]], CAPTURE, pose=exact(1.5, 20, 0))
    assert m.method == "pixels-only" and "horizon" in m.assumptions
    assert_finite(m)


def test_near_horizon_drops_failing_samples_and_says_so() -> None:
    strip = np.array([[0.0, 0], [4000, 0], [4000, 100], [0, 100]])  # top edge of a default photo
    m = measure_polygon(strip, CAPTURE)  # default pose: 45 +- 12 deg, top edge ~18 deg down
    assert m.method == "ground-plane"
    assert "were dropped" in m.assumptions
    assert_finite(m)


@pytest.mark.parametrize(
    ("polygon", "reason"),
    [
        (np.zeros((0, 2)), "3 are needed"),
        (np.array([[10.0, 10], [20, 20]]), "3 are needed"),
        (np.array([[10.0, 10], [20, 20], [30, 30]]), "no area"),
        (np.array([[10.0, 10], [20, np.nan], [30, 40]]), "non-finite"),
    ],
)
def test_degenerate_outlines_give_pixels_only(polygon: np.ndarray, reason: str) -> None:
    m = measure_polygon(polygon, CAPTURE)
    assert m.method == "pixels-only" and reason in m.assumptions
    assert m.area_px == 0.0 and m.area_m2 is None


def test_wall_distance_exact_and_default() -> None:
    fx = intrinsics(CAPTURE)[0]
    side_px = fx * 0.5 / 5.0  # a 0.5 m square 5 m away, 1 m right of the optical axis
    x0 = W / 2 + fx * 1.0 / 5.0
    square = np.array([[x0, 1000], [x0 + side_px, 1000], [x0 + side_px, 1000 + side_px]])
    square = np.r_[square, [[x0, 1000 + side_px]]]
    m = measure_polygon(
        square,
        CAPTURE,
        surface="wall",
        wall_distance_m=5.0,
        wall_distance_sigma_m=0.0,
        pose=exact(1.5, 0, 0),
    )
    assert m.method == "wall-distance"
    assert m.area_m2 == pytest.approx(0.25, rel=0.01)
    assert m.length_m == pytest.approx(0.5, rel=0.01) and m.width_m == pytest.approx(0.5, rel=0.01)
    centre_x = 1.25  # metres right of the axis
    assert m.bearing_offset_deg == pytest.approx(math.degrees(math.atan2(centre_x, 5.0)), abs=0.1)
    assert m.distance_m == pytest.approx(math.hypot(centre_x, 5.0), rel=0.01)
    guess = measure_polygon(square, CAPTURE, surface="wall")
    assert "4 +- 2 m (default guess)" in guess.assumptions
    assert guess.area_m2_interval[0] <= 0.25 <= guess.area_m2_interval[1]
    given = measure_polygon(square, CAPTURE, surface="wall", wall_distance_m=5.0)
    assert "5 +- 1.25 m (given)" in given.assumptions
    assert given.area_m2 == pytest.approx(0.25, rel=0.1)


def test_measurement_is_reproducible_by_seed() -> None:
    px = photograph(ground_rect(0.0, 2.0, 0.8, 0.6), 1.5, 45, 0)
    assert measure_polygon(px, CAPTURE, seed=3) == measure_polygon(px, CAPTURE, seed=3)
    assert measure_polygon(px, CAPTURE, seed=3) != measure_polygon(px, CAPTURE, seed=4)


def test_bad_arguments_raise_typed_errors() -> None:
    with pytest.raises(InvalidArgument, match="height_m"):
        Pose(height_m=-1.0)
    with pytest.raises(ValueError, match="pitch_sigma_deg"):
        Pose(pitch_sigma_deg=float("nan"))
    with pytest.raises(InvalidArgument, match="surface"):
        measure_polygon(np.zeros((4, 2)), CAPTURE, surface="ceiling")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="wall_distance_m"):
        measure_polygon(np.ones((4, 2)), CAPTURE, surface="wall", wall_distance_m=0.0)
    assert Pose.default() == Pose() and Pose.default().source == "default"

"""User scale and the method order: two marks a known length apart set the scale."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vision import camera
from vision.errors import InvalidArgument
from vision.measure import DIAGONAL_35MM, Pose
from vision.measure_best import measure_best
from vision.measure_scale import ScaleBar
from vision.types import Capture

W, H = 1600, 1200
CAPTURE = Capture(W, H, focal_length_35mm=26.0)
FX = 26.0 * math.hypot(W, H) / DIAGONAL_35MM


def ground_px(pts_m: np.ndarray, height: float = 1.5, pitch: float = 50, roll: float = 4):
    """Pixels of ground points (X, Y) for a camera at (0, 0, height)."""
    return camera.apply_homography(
        camera.ground_to_image(FX, W / 2, H / 2, pitch, roll, height), pts_m
    )


RECT_M = np.array([[-0.3, 1.6], [0.3, 1.6], [0.3, 2.0], [-0.3, 2.0]])  # 0.24 m2


def tape(a: tuple[float, float], b: tuple[float, float], **kw: float) -> ScaleBar:
    """A ScaleBar from the pixels of two ground points."""
    p = ground_px(np.array([a, b]), **kw)
    return ScaleBar(tuple(p[0]), tuple(p[1]), math.dist(a, b), click_sigma_px=2.0)


def test_user_scale_on_the_ground_needs_no_camera_height() -> None:
    # The pose's height is wrong by 2x: the marked length sets the scale instead.
    pose = Pose(3.0, 50.0, 4.0, 0.0, 2.0, 2.0, source="test")
    m = measure_best(ground_px(RECT_M), CAPTURE, pose=pose, scale=tape((-0.5, 1.4), (0.5, 1.4)))
    assert m.method == "user-scale"
    assert m.area_m2 == pytest.approx(0.24, rel=0.04)
    assert m.area_m2_interval[0] <= 0.24 <= m.area_m2_interval[1]
    assert "camera height not needed" in m.assumptions


def test_user_scale_on_a_wall_facing_the_camera() -> None:
    fx, d = FX, 3.0
    rect = np.array([[-0.2, -0.1], [0.4, -0.1], [0.4, 0.3], [-0.2, 0.3]]) * fx / d + [W / 2, H / 2]
    bar = ScaleBar((W / 2 - fx / d * 0.5, H / 2 + 200), (W / 2 + fx / d * 0.5, H / 2 + 200), 1.0)
    m = measure_best(rect, CAPTURE, surface="wall", scale=bar)
    assert m.method == "user-scale"
    assert m.area_m2 == pytest.approx(0.24, rel=0.02)
    assert m.distance_m == pytest.approx(d, rel=0.05)


def test_marks_too_close_fall_back_with_a_reason() -> None:
    bar = ScaleBar((800.0, 900.0), (803.0, 901.0), 1.0)
    m = measure_best(ground_px(RECT_M), CAPTURE, scale=bar, samples=64)
    assert m.method == "ground-plane" and m.assumptions.startswith("scale not used:")


def test_scale_bar_refuses_nonsense() -> None:
    with pytest.raises(InvalidArgument):
        ScaleBar((0.0, 0.0), (10.0, 10.0), 0.0)
    with pytest.raises(InvalidArgument):
        ScaleBar((0.0, math.nan), (10.0, 10.0), 1.0)
    with pytest.raises(InvalidArgument):
        measure_best(ground_px(RECT_M), CAPTURE, surface="ceiling")  # type: ignore[arg-type]


def test_degenerate_outlines_give_clear_pixels_only_results() -> None:
    pose = Pose(1.5, 15.0, 0.0, 0.0, 0.0, 0.0, source="test")  # the horizon at y = 278 px
    bar = tape((-0.5, 3.0), (0.5, 3.0), pitch=15, roll=0)
    zero = np.array([[10, 10], [20, 20], [30, 30]], float)
    m = measure_best(zero, CAPTURE, pose=pose, scale=bar)
    assert m.method == "pixels-only" and "no area" in m.assumptions
    above = np.array([[700, 5], [900, 5], [900, 30], [700, 30]], float)  # horizon below it
    m = measure_best(above, CAPTURE, pose=pose, samples=64)
    assert m.method == "pixels-only" and "horizon" in m.assumptions
    crossing = np.array([[700, 5], [900, 5], [900, 900], [700, 900]], float)
    m = measure_best(crossing, CAPTURE, pose=pose, scale=bar, samples=64)
    assert m.method == "pixels-only"
    assert "scale not used" in m.assumptions and "horizon" in m.assumptions

"""The marker method: the crew card fixes the surface plane; bad views fall back, never crash."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vision import camera
from vision.errors import InvalidArgument, NotMeasurable
from vision.marker import (
    MARKER_SIDE_M,
    MarkerSighting,
    find_marker,
    marker_image,
    measure_on_marker,
    write_card,
)
from vision.measure import DIAGONAL_35MM, Pose
from vision.measure_best import measure_best
from vision.types import Capture

W, H = 1600, 1200
CAPTURE = Capture(W, H, focal_length_35mm=26.0)
FX = 26.0 * math.hypot(W, H) / DIAGONAL_35MM


def ground_px(pts_m: np.ndarray, height: float, pitch: float, roll: float) -> np.ndarray:
    """Pixels of ground points (X, Y) for a camera at (0, 0, height)."""
    h = camera.ground_to_image(FX, W / 2, H / 2, pitch, roll, height)
    return camera.apply_homography(h, pts_m)


def square(x0: float, y0: float, side: float) -> np.ndarray:
    """Corners TL, TR, BR, BL of a square on the ground, as a card lying face up."""
    return np.array([[x0, y0 + side], [x0 + side, y0 + side], [x0 + side, y0], [x0, y0]])


def test_card_image_has_six_cells_and_a_margin() -> None:
    img = marker_image(cell_px=10, margin_cells=1)
    assert img.shape == (80, 80) and img.dtype == np.uint8
    assert (img[:10] == 255).all() and (img[10:70, 10] == 0).all()  # margin, then black border


def test_card_image_is_found_with_corners_in_the_measure_frame() -> None:
    card = marker_image(cell_px=20, margin_cells=2)  # black square spans [40, 160) px
    rgb = np.full((300, 400, 3), 128, np.uint8)
    rgb[50:250, 100:300] = card[..., None]
    s = find_marker(rgb)
    assert s is not None
    want = np.array([[140, 90], [260, 90], [260, 210], [140, 210]], float)
    assert np.abs(s.corners_px - want).max() < 0.8
    half = find_marker(rgb[::2, ::2].copy(), scale=0.5)
    assert half is not None and np.abs(half.corners_px - want).max() < 1.5


def test_find_marker_none_without_a_card_and_refuses_bad_input() -> None:
    assert find_marker(np.full((100, 100, 3), 200, np.uint8)) is None
    with pytest.raises(InvalidArgument):
        find_marker(np.zeros((10, 10), np.uint8))
    with pytest.raises(InvalidArgument):
        find_marker(np.zeros((10, 10, 3), np.uint8), scale=2.0)


@pytest.mark.parametrize(("height", "pitch", "roll"), [(1.5, 50, 0), (1.2, 35, 8), (1.8, 70, -6)])
def test_marker_measures_a_rectangle_on_the_ground(
    height: float, pitch: float, roll: float
) -> None:
    card = ground_px(square(0.3, 1.6, MARKER_SIDE_M), height, pitch, roll)
    rect = ground_px(square(-0.4, 1.8, 0.5), height, pitch, roll)
    m = measure_on_marker(rect, MarkerSighting(card), CAPTURE, samples=128)
    assert m.method == "marker"
    assert m.area_m2 == pytest.approx(0.25, rel=0.02)
    assert m.area_m2_interval[0] <= 0.25 <= m.area_m2_interval[1]
    assert m.length_m == pytest.approx(0.5, rel=0.02)
    assert m.distance_m == pytest.approx(math.hypot(-0.15, 2.05), rel=0.05)
    assert "DICT_4X4_50" in m.assumptions


def test_edge_on_marker_falls_back_to_the_pose_with_a_reason() -> None:
    # Seen from 1.5 m up, 12 m away: the card is a sliver a few pixels tall.
    card = ground_px(square(0.0, 12.0, MARKER_SIDE_M), 1.5, 10, 0)
    rect = ground_px(square(-0.25, 3.0, 0.5), 1.5, 10, 0)
    with pytest.raises(NotMeasurable):
        measure_on_marker(rect, MarkerSighting(card), CAPTURE)
    pose = Pose(1.5, 10.0, 0.0, 0.05, 1.0, 1.0, source="test")
    m = measure_best(rect, CAPTURE, pose=pose, marker=MarkerSighting(card), samples=64)
    assert m.method == "ground-plane"
    assert m.assumptions.startswith("marker not used:")
    assert "edge-on" in m.assumptions or "px on its shortest side" in m.assumptions


def test_degenerate_marker_quads_are_not_measurable() -> None:
    rect = ground_px(square(-0.25, 2.0, 0.5), 1.5, 50, 0)
    tiny = ground_px(square(0.5, 2.0, 0.01), 1.5, 50, 0)
    with pytest.raises(NotMeasurable, match="shortest side"):
        measure_on_marker(rect, MarkerSighting(tiny), CAPTURE)
    flat = np.array([[100, 100], [200, 100], [300, 101], [400, 102]], float)
    with pytest.raises(NotMeasurable, match="edge-on"):
        measure_on_marker(rect, MarkerSighting(flat), CAPTURE)
    with pytest.raises(InvalidArgument):
        measure_on_marker(rect, MarkerSighting(np.zeros((3, 2))), CAPTURE)


def test_outline_beyond_the_marker_planes_horizon_is_not_measured() -> None:
    card = ground_px(square(0.0, 2.5, MARKER_SIDE_M), 1.5, 20, 0)
    sky = np.array([[700, 10], [900, 10], [900, 40], [700, 40]], float)  # above the horizon
    with pytest.raises(NotMeasurable, match="horizon"):
        measure_on_marker(sky, MarkerSighting(card), CAPTURE)
    pose = Pose(1.5, 20.0, 0.0, 0.0, 0.0, 0.0, source="test")
    m = measure_best(sky, CAPTURE, pose=pose, marker=MarkerSighting(card), samples=64)
    assert m.method == "pixels-only" and "marker not used" in m.assumptions


def test_printable_card_is_150_mm_at_its_stated_resolution(tmp_path) -> None:
    from PIL import Image

    png, pdf = write_card(tmp_path)
    img = Image.open(png)
    dpi = img.info["dpi"][0]
    s = find_marker(np.asarray(img.convert("RGB")))
    assert s is not None and s.marker_id == 0
    side_mm = np.linalg.norm(s.corners_px[1] - s.corners_px[0]) / dpi * 25.4
    assert side_mm == pytest.approx(MARKER_SIDE_M * 1000, abs=0.5)
    assert b"/MediaBox [ 0 0 595.27" in pdf.read_bytes()  # A4, so 1:1 when printed at 100%


def test_random_cards_and_outlines_never_crash() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        quad = rng.uniform(-50, 1650, (4, 2)) if rng.random() < 0.5 else rng.uniform(0, 40, (4, 2))
        poly = rng.uniform(-100, 1700, (int(rng.integers(1, 8)), 2))
        m = measure_best(poly, CAPTURE, marker=MarkerSighting(quad), samples=16)
        assert m.method in ("marker", "ground-plane", "pixels-only")
        if m.area_m2 is not None:
            assert m.area_m2_interval[0] <= m.area_m2 <= m.area_m2_interval[1]


def test_card_on_another_plane_than_the_surface_is_refused() -> None:
    pose = Pose(1.5, 50.0, 0.0, 0.05, 3.0, 3.0, source="device")
    card = MarkerSighting(ground_px(square(0.3, 1.6, MARKER_SIDE_M), 1.5, 50, 0))
    rect = ground_px(square(-0.4, 1.8, 0.5), 1.5, 50, 0)
    assert measure_on_marker(rect, card, CAPTURE, pose=pose, samples=32).method == "marker"
    with pytest.raises(NotMeasurable, match="not on an upright wall"):
        measure_on_marker(rect, card, CAPTURE, surface="wall", pose=pose, samples=32)
    tilted = Pose(1.5, 10.0, 0.0, 0.05, 3.0, 3.0, source="device")  # the phone says 40 deg less
    with pytest.raises(NotMeasurable, match="not lying flat on the ground"):
        measure_on_marker(rect, card, CAPTURE, pose=tilted, samples=32)


def test_a_guessed_pose_does_not_overrule_the_card() -> None:
    card = MarkerSighting(ground_px(square(0.3, 1.6, MARKER_SIDE_M), 1.5, 50, 0))
    rect = ground_px(square(-0.4, 1.8, 0.5), 1.5, 50, 0)
    m = measure_on_marker(rect, card, CAPTURE, surface="wall", pose=Pose.default(), samples=32)
    assert m.method == "marker"

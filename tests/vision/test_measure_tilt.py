"""The pose as a posterior: the hand-held height prior, and the tilt read off the road texture."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vision import camera
from vision.errors import InvalidArgument
from vision.measure import Pose, _height_posterior, handheld_height_prior, measure_polygon
from vision.measure_best import measure_best
from vision.measure_tilt import read_tilt
from vision.types import Capture

W, H = 1600, 1200
CAPTURE = Capture(W, H, focal_length_35mm=26.0)
FX = 26.0 * math.hypot(W, H) / 43.27
TRUE = {"height": 1.5, "pitch": 38.0, "roll": 4.0}


def road_photo(
    pitch: float, roll: float, height: float, seed: int = 0, grain: float = 1.0
) -> np.ndarray:
    """An isotropic asphalt-like texture (1 cm texels, 20 m square) photographed on the ground;
    `grain` != 1 stretches it along the line of sight (its own anisotropy)."""
    rng = np.random.default_rng(seed)
    n = 2000
    tex = sum(
        cv2.GaussianBlur(rng.normal(0, 1, (n, n)).astype(np.float32), (0, 0), s) * s
        for s in (1.0, 3.0)
    )
    tex = np.clip(128 + 40 * tex / tex.std(), 0, 255).astype(np.uint8)
    side = 20.0 / n  # metres per texel; texel (i, j) -> ground X = (i - n/2) * side, Y = ...
    tex_to_ground = np.array([[side, 0, -10.0], [0, -side * grain, 10.0 * grain + 1.0], [0, 0, 1]])
    hg = camera.ground_to_image(FX, W / 2, H / 2, pitch, roll, height)
    img = cv2.warpPerspective(tex, hg @ tex_to_ground, (W, H), flags=cv2.INTER_LINEAR)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)


def ground_square(pitch: float, roll: float, height: float) -> tuple[np.ndarray, float]:
    """A 0.6 m square 3 m ahead in pixels, and its area."""
    sq = np.array([[-0.3, 2.7], [0.3, 2.7], [0.3, 3.3], [-0.3, 3.3]])
    hg = camera.ground_to_image(FX, W / 2, H / 2, pitch, roll, height)
    return camera.apply_homography(hg, sq), 0.36


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return road_photo(TRUE["pitch"], TRUE["roll"], TRUE["height"])


def test_height_prior_prefers_hand_height_but_keeps_a_tail() -> None:
    p = handheld_height_prior(np.array([0.2, 1.0, 1.5, 2.5, 6.0]))
    assert p[2] > 5 * p[1] and p[2] > 5 * p[3]
    assert p[3] > 0 and p[0] < 1e-6 * p[2] and p[4] < 1e-6 * p[2]


def test_height_reading_is_fused_with_the_prior() -> None:
    rng = np.random.default_rng(0)
    h, note = _height_posterior(rng, Pose(1.95, 45, 0, 0.2, 5, 5, "device"), 4000)
    assert 1.6 < np.median(h) < 1.85  # pulled in toward hand height, not to 1.5
    assert "how people hold phones" in note
    pole, _ = _height_posterior(rng, Pose(3.5, 45, 0, 0.2, 5, 5, "device"), 4000)
    assert np.median(pole) == pytest.approx(3.5, abs=0.15)  # a camera on a pole is believed
    exact, note = _height_posterior(rng, Pose(2.5, 45, 0, 0.0, 0, 0, "truth"), 10)
    assert (exact == 2.5).all() and note == ""
    _, note = _height_posterior(rng, Pose.default(), 10)
    assert note == ""  # the default pose is the hand-held guess already


def test_texture_reads_the_tilt(photo: np.ndarray) -> None:
    poly, _ = ground_square(TRUE["pitch"], TRUE["roll"], TRUE["height"])
    reading = Pose(1.5, TRUE["pitch"] + 7.0, TRUE["roll"] - 5.0, 0.2, 5.0, 5.0, "device")
    t = read_tilt(photo, FX, (W, H), reading, [poly])
    assert t is not None and t.blocks > 100
    i, k = np.unravel_index(np.argmax(t.loglik), t.loglik.shape)
    assert t.pitch_deg[i] == pytest.approx(TRUE["pitch"], abs=3.0)
    assert t.roll_deg[k] == pytest.approx(TRUE["roll"], abs=3.0)
    vague = Pose(1.5, TRUE["pitch"] + 20.0, 0.0, 0.25, 12.0, 5.0)  # the default's spread
    tv = read_tilt(photo, FX, (W, H), vague, [poly])
    assert tv is not None and tv.pitch_deg.min() < TRUE["pitch"] - 10  # the grid spans 3 sigma
    j = np.unravel_index(np.argmax(tv.loglik), tv.loglik.shape)[0]
    assert tv.pitch_deg[j] == pytest.approx(TRUE["pitch"], abs=3.0)
    small = cv2.resize(photo, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    t2 = read_tilt(small, FX, (W, H), reading, [poly])  # a downscaled copy reads the same
    assert t2 is not None
    j = np.unravel_index(np.argmax(t2.loglik), t2.loglik.shape)[0]
    assert t2.pitch_deg[j] == pytest.approx(t.pitch_deg[i], abs=1.0)


def test_photo_corrects_a_wrong_pitch_reading(photo: np.ndarray) -> None:
    poly, area = ground_square(TRUE["pitch"], TRUE["roll"], TRUE["height"])
    reading = Pose(1.5, TRUE["pitch"] + 7.0, TRUE["roll"], 0.2, 5.0, 5.0, "device")
    blind = measure_best(poly, CAPTURE, pose=reading, samples=128)
    seeing = measure_best(poly, CAPTURE, pose=reading, samples=128, rgb=photo)
    assert seeing.method == blind.method == "ground-plane"
    # The texture's own anisotropy is a nuisance of the reading (measure_tilt.OWN_SIGMA): on a
    # perfectly isotropic road it corrects less than the level alone would (0.55 of the blind
    # error here, was under 0.5), and far more where the road's grain has a direction.
    assert abs(seeing.area_m2 / area - 1) < 0.65 * abs(blind.area_m2 / area - 1)
    assert seeing.area_m2_interval[0] <= area <= seeing.area_m2_interval[1]
    assert "road texture" in seeing.assumptions and "road texture" not in blind.assumptions


def test_a_road_with_grain_along_the_view_is_not_read_as_steeper() -> None:
    """Grain stretched 1.25x along the line of sight looks like less foreshortening: read from
    the squeeze's level alone the pitch came out 11.5 deg too steep; with the texture's own
    anisotropy as a nuisance, within 3 deg. (Grain squeezed across the view still misleads
    it, toward a shallower pitch: docs/measuring.md.)"""
    photo = road_photo(TRUE["pitch"], TRUE["roll"], TRUE["height"], grain=1.25)
    poly, _ = ground_square(TRUE["pitch"], TRUE["roll"], TRUE["height"])
    reading = Pose(1.5, TRUE["pitch"] + 5.0, TRUE["roll"] - 3.0, 0.2, 5.0, 5.0, "device")
    t = read_tilt(photo, FX, (W, H), reading, [poly])
    assert t is not None
    i = np.unravel_index(np.argmax(t.loglik), t.loglik.shape)[0]
    assert t.pitch_deg[i] == pytest.approx(TRUE["pitch"], abs=3.0)


def test_blank_photo_falls_back_to_the_pose() -> None:
    poly, _ = ground_square(45.0, 0.0, 1.5)
    grey = np.full((H, W, 3), 128, np.uint8)
    pose = Pose(1.5, 45.0, 0.0, 0.2, 5.0, 5.0, "device")
    assert read_tilt(grey, FX, (W, H), pose, [poly]) is None
    m = measure_best(poly, CAPTURE, pose=pose, samples=64, rgb=grey)
    assert m == measure_polygon(poly, CAPTURE, pose=pose, samples=64)


def test_sky_outline_stays_pixels_only_with_a_photo(photo: np.ndarray) -> None:
    sky = np.array([[700.0, 5], [900, 5], [900, 40], [700, 40]])
    m = measure_best(sky, CAPTURE, pose=Pose(1.5, 10, 0, 0.1, 2, 2, "device"), rgb=photo)
    assert m.method == "pixels-only" and "horizon" in m.assumptions


def test_upward_pose_and_wall_ignore_the_texture(photo: np.ndarray) -> None:
    poly, _ = ground_square(TRUE["pitch"], TRUE["roll"], TRUE["height"])
    up = Pose(1.5, -80.0, 0.0, 0.2, 5.0, 5.0, "device")
    assert read_tilt(photo, FX, (W, H), up, [poly]) is None
    assert measure_best(poly, CAPTURE, pose=up, samples=32, rgb=photo).method == "pixels-only"
    wall = measure_best(poly, CAPTURE, surface="wall", pose=up, samples=32, rgb=photo)
    assert wall.method == "wall-distance" and "road texture" not in wall.assumptions
    with pytest.raises(InvalidArgument, match="uint8"):
        read_tilt(photo[..., 0], FX, (W, H), up)


def _anisotropy_one_pose(centres: np.ndarray, pitch: float, roll: float) -> np.ndarray:
    """The slow, plain reading of one pose (what read_tilt did pose by pose before the grid was
    vectorised): map each centre to the ground and back, invert A A^T per block."""
    hg = camera.ground_to_image(FX, W / 2, H / 2, pitch, roll, 1.0)
    ground = camera.apply_homography(np.linalg.inv(hg), centres)
    p = np.c_[ground, np.ones(len(ground))] @ hg.T
    u, v, wz = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2], p[:, 2]
    a = np.empty((len(centres), 2, 2))
    for r, q in ((0, u), (1, v)):
        for c in (0, 1):
            a[:, r, c] = (hg[r, c] - q * hg[2, c]) / wz
    j = np.linalg.inv(a @ a.transpose(0, 2, 1))
    tr = j[:, 0, 0] + j[:, 1, 1]
    e = np.stack([(j[:, 0, 0] - j[:, 1, 1]) / tr, 2 * j[:, 0, 1] / tr], -1)
    e[(wz <= 0) | (np.hypot(ground[:, 0], ground[:, 1]) > 40.0)] = np.nan
    return e


def test_the_pose_grid_reads_every_pose_as_one_pose_at_a_time_would() -> None:
    from vision.measure_tilt import predicted_grid

    rng = np.random.default_rng(3)
    centres = rng.uniform((0, 0), (W, H), (120, 2))
    pitches, rolls = np.array([2.0, 25.0, 38.0, 70.0, 89.0]), np.array([-20.0, 0.0, 7.5])
    grid = predicted_grid(centres, FX, W / 2, H / 2, pitches, rolls)
    assert grid.shape == (5, 3, 120, 2)
    for i, p in enumerate(pitches):
        for k, r in enumerate(rolls):
            want = _anisotropy_one_pose(centres, p, r)
            np.testing.assert_array_equal(np.isnan(grid[i, k]), np.isnan(want))
            np.testing.assert_allclose(grid[i, k], want, atol=1e-9)
    # At a low pitch the top of the frame looks above the horizon: those blocks read nothing.
    assert np.isnan(grid[0, 1, :, 0]).any() and not np.isnan(grid[3, 1, :, 0]).any()

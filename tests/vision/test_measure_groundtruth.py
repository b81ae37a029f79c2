"""The rendered ground-truth set: deterministic, honest EXIF, and the methods meet their targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vision.groundtruth import TruthCase, generate
from vision.image import decode
from vision.marker import find_marker
from vision.measure import Pose
from vision.measure_best import measure_best


@pytest.fixture(scope="module")
def cases(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[TruthCase]:
    """Nine cases: six on the road (three with the card), three on a wall (two with it)."""
    return generate(data_dir, 9, seed=7, cache_dir=tmp_path_factory.mktemp("gt"))


def test_same_seed_same_photos_and_the_cache_returns_them(
    data_dir: Path, cases: list[TruthCase], tmp_path: Path
) -> None:
    again = generate(data_dir, 2, seed=7)
    assert [c.jpeg for c in again] == [c.jpeg for c in cases[:2]]
    generate(data_dir, 2, seed=7, cache_dir=tmp_path)
    cached = generate(data_dir, 2, seed=7, cache_dir=tmp_path)
    assert cached[1].jpeg == again[1].jpeg
    assert np.allclose(cached[1].polygon_px, again[1].polygon_px)


def test_cases_carry_exif_focal_pose_and_truth(cases: list[TruthCase]) -> None:
    assert {c.surface for c in cases} == {"ground", "wall"}
    assert {c.marker for c in cases} == {True, False}
    for c in cases:
        cap = decode(c.jpeg).capture
        assert cap.focal_length_35mm == c.focal_35mm and 24 <= c.focal_35mm <= 30
        assert (cap.width_px, cap.height_px) == (1600, 1200)
        assert c.area_m2 > 0.01 and c.polygon_px.shape == c.polygon_m.shape
        if c.surface == "ground":
            assert 25 <= c.pose["pitch_deg"] <= 70 and 1.2 <= c.pose["camera_height_m"] <= 1.8
        assert -10 <= c.pose["roll_deg"] <= 10


def test_marker_cases_meet_three_percent_median(cases: list[TruthCase]) -> None:
    errors = []
    for c in (c for c in cases if c.marker):
        img = decode(c.jpeg)
        s = find_marker(img.rgb)
        assert s is not None, c.name
        assert np.abs(s.corners_px - c.marker_corners_px).max() < 1.0
        m = measure_best(c.polygon_px, img.capture, surface=c.surface, marker=s, samples=64)
        assert m.method == "marker", m.assumptions
        errors.append(abs(m.area_m2 / c.area_m2 - 1))
    assert np.median(errors) <= 0.03, errors


def test_exact_pose_ground_cases_meet_five_percent_median(cases: list[TruthCase]) -> None:
    errors = []
    for c in (c for c in cases if c.surface == "ground"):
        p = c.pose
        pose = Pose(p["camera_height_m"], p["pitch_deg"], p["roll_deg"], 0, 0, 0, "truth")
        m = measure_best(c.polygon_px, decode(c.jpeg).capture, pose=pose, samples=16)
        assert m.method == "ground-plane"
        errors.append(abs(m.area_m2 / c.area_m2 - 1))
    assert np.median(errors) <= 0.05, errors


def test_isotropic_roads_keep_the_cases_and_lose_the_direction(
    data_dir: Path, cases: list[TruthCase], tmp_path: Path
) -> None:
    """`road="isotropic"`: the same poses, objects and walls; each road crop keeps its grain
    (power per ring of the spectrum) and loses its direction; cached apart from the photos."""
    from vision.groundtruth import _isotropic

    iso = generate(data_dir, 3, seed=7, road="isotropic", cache_dir=tmp_path)
    for a, b in zip(iso, cases[:3], strict=True):
        assert a.pose == b.pose and np.allclose(a.polygon_px, b.polygon_px)
        assert (a.jpeg == b.jpeg) == (a.surface == "wall")
    assert generate(data_dir, 3, seed=7, cache_dir=tmp_path)[0].jpeg == cases[0].jpeg

    # A texture with a strong direction (stripes) comes back without it, grain kept.
    rng = np.random.default_rng(0)
    y = np.arange(256)[:, None]
    stripes = 128 + 60 * np.sin(y / 3.0) + rng.normal(0, 5, (256, 256))
    tex = np.repeat(np.clip(stripes, 0, 255).astype(np.uint8)[..., None], 3, axis=2)

    def direction(img: np.ndarray) -> float:
        g = img[..., 0].astype(float)
        gy, gx = np.gradient(g)
        jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
        return float(np.hypot(jxx - jyy, 2 * jxy) / (jxx + jyy))

    out = _isotropic(tex, np.random.default_rng(1))
    assert direction(tex) > 0.8 and direction(out) < 0.1
    assert abs(out[..., 0].std() - tex[..., 0].std()) < 0.05 * tex[..., 0].std()
    with pytest.raises(ValueError, match="road must be one of"):
        generate(data_dir, 1, road="painted")

"""Duplicates and routing on realistic cases: one pothole reported again from other angles and
times (real photos of one UK pothole sequence), and a pothole on a state parkway."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline import intake
from pipeline.context import Context
from pipeline.duplicates import find_duplicate
from pipeline.settings import Settings
from pipeline.types import Finding, MeasurementOut

HARVARD_SQ = (42.37330, -71.11890)


def _offset(lat: float, lon: float, north_m: float, east_m: float = 0.0) -> tuple[float, float]:
    return (
        lat + north_m / 111_320.0,
        lon + east_m / (111_320.0 * math.cos(math.radians(lat))),
    )


@pytest.fixture
def ctx(settings: Settings) -> Context:
    return Context(settings)


def _open_case(ctx: Context, photo: Path, lat: float, lon: float, category: str = "pothole") -> str:
    form = intake.ReportForm(lat=lat, lon=lon, category=category)
    cid = intake.submit(ctx, photo.read_bytes(), form)
    assert ctx.store.claim(cid, by="test", lease_s=60)
    finding = Finding(
        class_name=category, confidence=0.9, bbox_xyxy=(0, 0, 1, 1), polygon_px=[(0, 0)],
        measurement=MeasurementOut(method="pixels-only", area_px=1.0),
    )  # fmt: skip
    ctx.store.save_result(
        cid, status="needs_review", findings=[finding], category=category, severity=None,
        place=None, lat=lat, lon=lon, routing=None, by="test", why="seeded",
    )  # fmt: skip
    return cid


def test_the_same_pothole_reported_again_is_linked(ctx: Context, data_dir: Path) -> None:
    frames = sorted((data_dir / "stereo-potholes-uk" / "images" / "train").glob("dataset2_*.jpg"))
    first, again = frames[5], frames[6]  # one pothole, a moment and a step apart
    other = sorted((data_dir / "potholes-seg" / "images" / "val").glob("*.jpg"))[0]
    original = _open_case(ctx, first, *HARVARD_SQ)

    # 30 m away (GPS error on another day) and photographed from elsewhere: the photos match.
    lat, lon = _offset(*HARVARD_SQ, 30)
    dup = find_duplicate(ctx, "new", "pothole", lat, lon, again.read_bytes())
    assert dup is not None and dup.case_id == original
    assert dup.inliers is not None and dup.inliers >= ctx.settings.duplicate_min_inliers

    # Same distance, a different pothole: not linked.
    assert find_duplicate(ctx, "new", "pothole", lat, lon, other.read_bytes()) is None
    # A different pothole, but on the very spot: the same problem as far as a crew is concerned.
    lat3, lon3 = _offset(*HARVARD_SQ, 3)
    assert find_duplicate(ctx, "new", "pothole", lat3, lon3, other.read_bytes()).case_id == original
    # Another category on the same spot is another problem.
    assert find_duplicate(ctx, "new", "graffiti", lat3, lon3, other.read_bytes()) is None
    # Far away: never.
    lat4, lon4 = _offset(*HARVARD_SQ, 400)
    assert find_duplicate(ctx, "new", "pothole", lat4, lon4, again.read_bytes()) is None


def test_links_follow_to_the_original_and_closed_cases_are_left_alone(
    ctx: Context, data_dir: Path
) -> None:
    frames = sorted((data_dir / "stereo-potholes-uk" / "images" / "train").glob("dataset2_*.jpg"))
    original = _open_case(ctx, frames[8], *HARVARD_SQ)
    second = _open_case(ctx, frames[9], *_offset(*HARVARD_SQ, 2))
    ctx.store.transition(second, "closed", by="test", duplicate_of=original, resolution="duplicate")
    ctx.store.transition(original, "closed", by="crew", why="fixed", resolution="fixed")
    assert find_duplicate(ctx, "new", "pothole", *HARVARD_SQ, frames[10].read_bytes()) is None


def test_a_pothole_on_a_state_parkway_goes_to_the_state(ctx: Context) -> None:
    [(lat, lon, _heading, street)] = ctx.geo.sample_street_points(["Memorial Dr"], 1, seed=3)
    place = ctx.geo.place(lat, lon, uncertainty_m=5)
    assert place.in_jurisdiction and place.street_name == street == "Memorial Dr"
    assert place.road_owner == "state-dcr"
    routing = ctx.city.route(
        category="pothole", severity="high", road_owner=place.road_owner, in_jurisdiction=True,
        now=datetime.now(UTC),
    )  # fmt: skip
    assert routing.external and "DCR" in routing.department
    # The same pothole photo on a city street stays with the city's Public Works.
    [(lat2, lon2, _h, _s)] = ctx.geo.sample_street_points(["Hampshire St"], 1, seed=3)
    city_place = ctx.geo.place(lat2, lon2, uncertainty_m=5)
    assert city_place.road_owner == "city"
    assert "Public Works" in ctx.city.route(
        category="pothole", severity="high", road_owner="city", in_jurisdiction=True,
        now=datetime.now(UTC),
    ).department  # fmt: skip

"""Sampling demo points on named streets (checked against the centerline file itself)."""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import shape

from geo.errors import LayerError

TO_LOCAL = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:26986", always_xy=True)
GEOD = pyproj.Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def streets_by_name(data_dir) -> dict[str, shapely.Geometry]:
    """Each street's centerline, in metres, read straight from the file."""
    fc = json.loads((data_dir / "gis/cambridge-ma/street_centerlines.geojson").read_text())
    parts: dict[str, list] = {}
    for f in fc["features"]:
        parts.setdefault(f["properties"].get("Street"), []).append(shape(f["geometry"]))

    def local(g: shapely.Geometry) -> shapely.Geometry:
        return shapely.transform(g, lambda xy: np.column_stack(TO_LOCAL.transform(*xy.T)))

    return {k: local(shapely.union_all(v)) for k, v in parts.items()}


def test_samples_lie_on_the_named_street_inside_the_city(city, spec, streets_by_name):
    names = spec["demo_streets"]
    pts = city.sample_street_points(names, 21, seed=7)
    assert len(pts) == 21
    assert {p[3] for p in pts} == set(names)  # every street gets its turn
    lats, lons = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    assert city.contains_many(lats, lons).all()
    for lat, lon, heading, name in pts:
        x, y = TO_LOCAL.transform(lon, lat)
        assert streets_by_name[name].distance(shapely.Point(x, y)) < 1.0
        assert 0.0 <= heading < 360.0


def test_heading_runs_along_the_street(city, streets_by_name):
    inv = pyproj.Transformer.from_crs("EPSG:26986", "EPSG:4326", always_xy=True)
    for lat, lon, heading, name in city.sample_street_points(["Hurley St", "Broadway"], 8, 3):
        line = streets_by_name[name]
        d = line.project(shapely.Point(TO_LOCAL.transform(lon, lat)))
        a, b = line.interpolate(max(d - 5, 0)), line.interpolate(d + 5)
        (lon_a, lon_b), (lat_a, lat_b) = inv.transform([a.x, b.x], [a.y, b.y])
        along, _, _ = GEOD.inv(lon_a, lat_a, lon_b, lat_b)
        off = min(abs((heading - h + 180) % 360 - 180) for h in (along, along + 180))
        assert off < 10.0


def test_samples_are_deterministic_by_seed(city):
    a = city.sample_street_points(["Broadway", "Oxford St"], 5, seed=1)
    assert a == city.sample_street_points(["Broadway", "Oxford St"], 5, seed=1)
    assert a != city.sample_street_points(["Broadway", "Oxford St"], 5, seed=2)


def test_unknown_street_says_what_to_use(city):
    with pytest.raises(LayerError, match="no street named"):
        city.sample_street_points(["Nowhere Blvd"], 3, seed=0)

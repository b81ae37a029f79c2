"""Placing points on the real Cambridge layers: lots, addresses, streets, jurisdiction, assets."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from geo.errors import GeoError, GeoInputError

# A spread of lots: plain, condo building (many address rows), Harvard Sq, a state highway,
# a polygon that was self-intersecting (repaired) and one on a corner far from the first.
KNOWN_LOTS = ["127-123", "17-1", "159-2", "7-18", "62-41", "100-62", "116-99", "48-156"]
# On the Massachusetts Ave centerline (segment Massach_Ave_28, between Central and Harvard),
# inside the parcel layer's ROAD polygon.
MASS_AVE = (42.368705, -71.109513)


@pytest.fixture(scope="module")
def first_address(data_dir) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    with open(data_dir / "gis/cambridge-ma/parcel_addresses.csv", newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["ML"], (row["Location"], row["UseDescription"]))
    return out


@pytest.fixture(scope="module")
def lot_points(data_dir) -> dict[str, tuple[float, float]]:
    fc = json.loads((data_dir / "gis/cambridge-ma/parcels.geojson").read_text())
    out = {}
    for f in fc["features"]:
        ml = f["properties"].get("ML")
        if ml in KNOWN_LOTS and ml not in out:
            g = shapely.make_valid(shape(f["geometry"]))
            p = g.representative_point()
            out[ml] = (p.y, p.x)
    return out


@pytest.fixture(scope="module")
def segments(data_dir) -> dict[str, dict]:
    fc = json.loads((data_dir / "gis/cambridge-ma/street_centerlines.geojson").read_text())
    return {f["properties"]["ID"]: f["properties"] for f in fc["features"]}


@pytest.mark.parametrize("ml", KNOWN_LOTS)
def test_known_addresses_land_in_their_parcel(city, lot_points, first_address, ml):
    lat, lon = lot_points[ml]
    p = city.place(lat, lon)
    assert p.in_jurisdiction
    assert p.parcel_id == ml
    assert p.parcel_distance_m == 0.0
    assert (p.address, p.parcel_use) == first_address[ml]
    assert p.non_lot_id is None
    assert p.street_name is not None and p.street_distance_m is not None


def test_state_highway_is_owned_by_the_state(city, lot_points):
    p = city.place(*lot_points["7-18"])  # 219 Monsignor O'Brien Hwy
    assert p.street_name == "Monsignor OBrien Hwy"
    assert p.road_owner == "state-massdot"
    assert p.road_class == "major"


@pytest.mark.parametrize(
    "lat, lon",
    [(42.3551, -71.0656), (42.3796, -71.0935), (42.3967, -71.1223), (42.3601, -71.0589)],
    ids=["boston-common", "union-sq-somerville", "davis-sq-somerville", "boston-city-hall"],
)
def test_points_outside_the_boundary(city, lat, lon):
    assert not city.contains(lat, lon)
    p = city.place(lat, lon)
    assert not p.in_jurisdiction
    assert p.outside_place is None


def test_outside_but_near_still_names_the_nearest_street(city):
    # Just over the Arlington line, ~27 m past where Massachusetts Ave's centerline ends.
    p = city.place(42.401638, -71.136996)
    assert not p.in_jurisdiction
    assert p.street_name == "Massachusetts Ave" and p.street_distance_m < 40.0
    assert p.parcel_id is None  # no Cambridge lot within reach


def test_a_point_in_the_street_lands_on_the_street_not_the_road_polygon(city, segments):
    p = city.place(*MASS_AVE)
    assert p.in_jurisdiction
    assert p.street_name == "Massachusetts Ave"
    assert p.street_id == "Massach_Ave_28"
    assert p.street_distance_m < 1.0
    assert p.non_lot_id == "ROAD"
    assert p.parcel_id not in {"ROAD", "---", "RR"} and re.match(r"^\d", p.parcel_id)
    assert p.address is not None and 0 < p.parcel_distance_m <= 30
    assert p.road_class == "major" and p.road_owner == "city"
    assert p.zip_code in {"02138", "02139"}


def test_interpolated_address_is_within_the_segment_range(city, segments):
    p = city.place(*MASS_AVE)
    num, name = p.interpolated_address.split(" ", 1)
    seg = segments[p.street_id]
    nums = [seg[k] for k in ("L_From", "L_To", "R_From", "R_To") if seg[k] and seg[k] > 0]
    assert name == "Massachusetts Ave"
    assert min(nums) <= int(num) <= max(nums)


def test_interpolated_address_uses_the_side_the_point_is_on(city, lot_points, segments):
    # 931 Massachusetts Ave sits on the odd side: the interpolated number must be odd too.
    p = city.place(*lot_points["116-99"])
    num = int(p.interpolated_address.split(" ", 1)[0])
    assert p.street_name == "Massachusetts Ave" and num % 2 == 1
    assert abs(num - 931) <= 40


def test_nearest_streetlight_and_district(city):
    p = city.place(*MASS_AVE, asset_kind="streetlight")
    assert p.asset_kind == "streetlight"
    assert re.match(r"^\d+-", p.asset_id) and p.asset_distance_m <= 50
    # North Cambridge (CDD neighborhood 11), well inside it.
    assert city.place(42.395, -71.13).district == "11"


def test_district_is_none_where_nothing_says(city):
    # Middle of Fresh Pond reservoir: no lights within the vote radius.
    assert city.place(42.3855, -71.1490).district is None


def test_place_many_matches_place(city, lot_points):
    pts = [*lot_points.values(), MASS_AVE, (42.3551, -71.0656)]
    lats, lons = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    many = city.place_many(lats, lons, asset_kind="streetlight")
    assert many == [city.place(a, b, asset_kind="streetlight") for a, b in pts]
    ids = city.parcel_ids(lats, lons)
    assert list(ids[: len(lot_points)]) == list(lot_points)
    assert ids[-2] is None and ids[-1] is None  # a street point has no containing lot
    assert city.parcel_ids(lats, lons, max_distance_m=30)[-2] == many[-2].parcel_id


def test_bad_input_raises_typed_errors(city):
    with pytest.raises(GeoInputError, match="WGS84"):
        city.place(float("nan"), -71.1)
    with pytest.raises(GeoInputError, match="streetlight"):
        city.place(*MASS_AVE, asset_kind="hydrant")
    with pytest.raises(GeoError):
        city.place(*MASS_AVE, uncertainty_m=-1)
    with pytest.raises(ValueError):  # typed errors are builtins too
        city.contains(91.0, 0.0)


def test_unnumbered_polygons_are_not_lots(city, data_dir):
    # "--MD" and friends match city.yaml's non_lot_pattern: a point in one names the nearest lot.
    fc = json.loads((data_dir / "gis/cambridge-ma/parcels.geojson").read_text())
    polys = [shape(f["geometry"]) for f in fc["features"] if f["properties"].get("ML") == "--MD"]
    p = shapely.make_valid(polys[0]).representative_point()
    place = city.place(p.y, p.x, uncertainty_m=500.0)
    assert place.non_lot_id == "--MD"
    assert place.parcel_id is None or not place.parcel_id.startswith("-")

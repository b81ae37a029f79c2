"""Geocoding on the city's own layers: site addresses, parcel ids, street address ranges."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from geo.geocode import Geocoder, normalize_address
from geo.layers import CityGeo


@pytest.fixture(scope="module")
def geocoder(city: CityGeo) -> Geocoder:
    return Geocoder(city)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("795 Massachusetts Avenue, Cambridge, MA 02139", (795, 795, "massachusetts ave")),
        ("20 CHESTNUT ST #57", (20, 20, "chestnut st")),
        ("57-61 Kinnaird Street Apt 2", (57, 61, "kinnaird st")),
        ("38 1/2 Roberts Road", (38, 38, "roberts rd")),
        ("221 Monsignor O'Brien Highway", (221, 221, "monsignor obrien hwy")),
        ("Massachusetts Ave", None),
        ("", None),
    ],
)
def test_normalize_address(text: str, expected: tuple | None) -> None:
    assert normalize_address(text) == expected


def test_site_addresses_land_in_their_own_parcel(
    geocoder: Geocoder, city: CityGeo, data_dir: Path
) -> None:
    # Every 500th row of the city's address table: its lot, and a point inside that lot.
    with (data_dir / "gis" / "cambridge-ma" / "parcel_addresses.csv").open() as f:
        rows = list(csv.DictReader(f))[::500]
    checked = 0
    for row in rows:
        hit = geocoder.by_address(row["Location"])
        if hit is None or hit.method != "parcel":
            continue  # a unit row whose building's first row has another number
        assert city.parcel_at(hit.lat, hit.lon) == hit.parcel_id
        checked += 1
    assert checked >= len(rows) * 0.8, f"only {checked} of {len(rows)} addresses found"


def test_parcel_id_and_a_range_address(geocoder: Geocoder, city: CityGeo) -> None:
    hit = geocoder.by_parcel_id("7-19")
    assert hit is not None and hit.address == "221 MONSIGNOR OBRIEN HWY"
    assert city.parcel_at(hit.lat, hit.lon) == "7-19"
    inside = geocoder.by_address("59 Kinnaird St")  # the lot "57-61 KINNAIRD ST"
    assert inside is not None and inside.address == "57-61 KINNAIRD ST"


def test_numbers_missing_from_the_lots_fall_back_to_street_ranges(
    geocoder: Geocoder, city: CityGeo
) -> None:
    hit = geocoder.by_address("795 Massachusetts Ave")  # City Hall: no lot row with that number
    assert hit is not None and hit.method == "street_range"
    street = city.nearest_street(hit.lat, hit.lon, max_distance_m=1.0)
    assert street is not None and street.name == "Massachusetts Ave"
    assert city.contains(hit.lat, hit.lon)


@pytest.mark.parametrize("text", ["1 Nowhere Lane", "99999 Massachusetts Ave", "no number St"])
def test_unknown_addresses_answer_none(geocoder: Geocoder, text: str) -> None:
    assert geocoder.by_address(text) is None
    assert geocoder.by_parcel_id("no-such-parcel") is None

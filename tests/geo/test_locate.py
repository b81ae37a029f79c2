"""Moving the camera fix to the object: geodesic offset and honest uncertainty."""

from __future__ import annotations

import math

import pytest

from geo.errors import GeoInputError
from geo.locate import locate_object
from geo.types import Fix

FIX = Fix(lat=42.3736, lon=-71.1190, accuracy_m=5.0, source="device", heading_deg=0.0)


def test_north_10m_moves_latitude_only():
    lat, lon, unc = locate_object(FIX, 10.0, distance_sigma_m=1.0, heading_sigma_deg=10.0)
    assert lat - FIX.lat == pytest.approx(9.0e-5, rel=0.01)
    assert lon == pytest.approx(FIX.lon, abs=1e-9)
    assert unc == pytest.approx(math.sqrt(5**2 + 1**2 + (10 * math.radians(10)) ** 2))


def test_bearing_offset_turns_the_direction():
    east = Fix(lat=FIX.lat, lon=FIX.lon, accuracy_m=5.0, source="exif", heading_deg=350.0)
    lat, lon, _ = locate_object(east, 20.0, bearing_offset_deg=100.0)
    assert lat == pytest.approx(FIX.lat, abs=2e-7)
    # 20 m east at 42.37° N: 20 / (111320 cos φ) degrees of longitude.
    assert lon - FIX.lon == pytest.approx(
        20 / (111_320 * math.cos(math.radians(FIX.lat))), rel=0.01
    )


def test_without_heading_stays_at_fix_and_widens_uncertainty():
    no_heading = Fix(lat=FIX.lat, lon=FIX.lon, accuracy_m=5.0, source="device")
    lat, lon, unc = locate_object(no_heading, 12.0, distance_sigma_m=2.0)
    assert (lat, lon) == (FIX.lat, FIX.lon)
    assert unc == pytest.approx(5.0 + 12.0 + 2.0)
    _, _, with_heading = locate_object(FIX, 12.0, distance_sigma_m=2.0)
    assert unc > with_heading


def test_uncertainty_grows_with_distance_and_heading_sigma():
    near = locate_object(FIX, 5.0, distance_sigma_m=0.5)[2]
    far = locate_object(FIX, 40.0, distance_sigma_m=0.5)[2]
    sloppy = locate_object(FIX, 40.0, distance_sigma_m=0.5, heading_sigma_deg=40.0)[2]
    assert FIX.accuracy_m < near < far < sloppy


def test_no_distance_is_the_fix():
    assert locate_object(FIX, None) == (FIX.lat, FIX.lon, FIX.accuracy_m)


def test_bad_distance_raises():
    with pytest.raises(GeoInputError, match="distance_m"):
        locate_object(FIX, -3.0)
    with pytest.raises(ValueError):
        locate_object(FIX, float("inf"))

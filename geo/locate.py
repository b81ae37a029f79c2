"""Where the photographed object is: the camera fix moved along its heading by the distance."""

from __future__ import annotations

import math

import pyproj

from geo.errors import GeoInputError
from geo.types import Fix

_GEOD = pyproj.Geod(ellps="WGS84")
# Without a stated distance sigma, a monocular ground-plane distance is assumed good to 25%.
DEFAULT_DISTANCE_SIGMA_FRACTION = 0.25


def locate_object(
    fix: Fix,
    distance_m: float | None,
    bearing_offset_deg: float | None = None,
    distance_sigma_m: float | None = None,
    heading_sigma_deg: float = 15.0,
) -> tuple[float, float, float]:
    """(lat, lon, uncertainty_m) of an object seen distance_m from the camera, off its heading."""
    if distance_m is not None and not (math.isfinite(distance_m) and distance_m >= 0):
        raise GeoInputError(f"distance_m must be a finite distance >= 0 metres, got {distance_m}")
    if distance_sigma_m is not None and not (
        math.isfinite(distance_sigma_m) and distance_sigma_m >= 0
    ):
        raise GeoInputError(f"distance_sigma_m must be finite and >= 0, got {distance_sigma_m}")
    if not (math.isfinite(heading_sigma_deg) and heading_sigma_deg >= 0):
        raise GeoInputError(f"heading_sigma_deg must be finite and >= 0, got {heading_sigma_deg}")
    if bearing_offset_deg is not None and not math.isfinite(bearing_offset_deg):
        raise GeoInputError(f"bearing_offset_deg must be finite, got {bearing_offset_deg}")
    if not distance_m:
        return fix.lat, fix.lon, float(fix.accuracy_m)
    d_sigma = (
        distance_sigma_m
        if distance_sigma_m is not None
        else DEFAULT_DISTANCE_SIGMA_FRACTION * distance_m
    )
    if fix.heading_deg is None:
        # Direction unknown: the object is somewhere on a circle of that radius round the fix.
        return fix.lat, fix.lon, float(fix.accuracy_m + distance_m + d_sigma)
    azimuth = (fix.heading_deg + (bearing_offset_deg or 0.0)) % 360.0
    lon, lat, _ = _GEOD.fwd(fix.lon, fix.lat, azimuth, distance_m)
    # Independent errors add in quadrature; a heading error sweeps an arc of length d·σθ.
    across = distance_m * math.radians(heading_sigma_deg)
    unc = math.sqrt(fix.accuracy_m**2 + d_sigma**2 + across**2)
    return float(lat), float(lon), float(unc)

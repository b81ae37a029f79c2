"""Spatial helpers of the case store: the sphere both backends measure on, the PostGIS query
and the SQLite bounding-box prefilter for `cases_near`."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import and_, func, literal_column, or_, select

from pipeline.db import CaseRow
from pipeline.errors import InvalidReport

# PostGIS's sphere for geography with use_spheroid=false: the WGS84 mean radius (2a + b) / 3.
# Both backends measure on it, so they agree to the millimetre (the spheroid differs by <0.5%).
EARTH_RADIUS_M = 6_371_008.771415

NEAR_COLS = (
    CaseRow.id, CaseRow.status, CaseRow.category, CaseRow.lat, CaseRow.lon, CaseRow.created_at,
)  # fmt: skip


def _check_point(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidReport(f"({lat}, {lon}) is not a WGS84 point (lat -90..90, lon -180..180)")


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on PostGIS's sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _near_postgis(
    filters: list[Any], lat: float, lon: float, radius_m: float, limit: int = 50
) -> Any:
    # geography(geom) is the ix_cases_geog expression (`geom::geography` is that same call), so
    # ST_DWithin can use the index; use_spheroid=false measures on haversine_m's sphere.
    geog = func.geography(literal_column("cases.geom"))
    here = func.geography(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326))
    dist = func.ST_Distance(geog, here, False).label("distance_m")
    near = func.ST_DWithin(geog, here, radius_m, False)
    order = (dist, CaseRow.created_at, CaseRow.id)
    return select(*NEAR_COLS, dist).where(*filters, near).order_by(*order).limit(limit)


def _bbox(lat: float, lon: float, radius_m: float) -> Any:
    """A (lat, lon) box that holds the whole circle: exact bounds, so the prefilter drops none."""
    d = radius_m / EARTH_RADIUS_M  # angular radius
    margin = 1e-9  # degrees (~0.1 mm): float rounding must never drop a case on the edge
    lat_lo, lat_hi = lat - math.degrees(d) - margin, lat + math.degrees(d) + margin
    in_lat = CaseRow.lat.between(lat_lo, lat_hi)
    if lat_lo <= -90 or lat_hi >= 90 or math.sin(d) >= math.cos(math.radians(lat)):
        return in_lat  # the circle holds a pole: every longitude is in reach
    dlon = math.degrees(math.asin(math.sin(d) / math.cos(math.radians(lat)))) + margin
    lo, hi = lon - dlon, lon + dlon
    if lo < -180:  # the circle crosses the antimeridian: two longitude ranges
        return and_(in_lat, or_(CaseRow.lon >= lo + 360, CaseRow.lon <= hi))
    if hi > 180:
        return and_(in_lat, or_(CaseRow.lon >= lo, CaseRow.lon <= hi - 360))
    return and_(in_lat, CaseRow.lon.between(lo, hi))

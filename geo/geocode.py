"""Addresses to points: a city's own site addresses (lots), then its street address ranges.

Open311 clients may locate a request by `address_string` or `address_id` instead of lat/long.
Both resolve through the city's layers: a site address names a lot (the point is inside it), a
parcel id is the lot itself, and a house number the lot table lacks is interpolated along the
street centerline whose address range holds it. No outside geocoding service is called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import shapely

from geo.crs import Projector
from geo.index import CityGeo
from geo.spec import norm_name

# Street-type words as residents write them -> as city address tables abbreviate them.
SUFFIXES = {
    "avenue": "ave",
    "av": "ave",
    "street": "st",
    "road": "rd",
    "drive": "dr",
    "place": "pl",
    "court": "ct",
    "terrace": "ter",
    "park": "pk",
    "parkway": "pkwy",
    "circle": "cir",
    "lane": "ln",
    "square": "sq",
    "boulevard": "blvd",
    "highway": "hwy",
    "way": "way",
}
# A house number (a range "57-61", a letter "12A" or a half "38 1/2"), then the street.
_ADDRESS = re.compile(r"^(\d+)[a-z]?(?:\s*-\s*(\d+)[a-z]?)?(?:\s+1/2)?\s+(.+)$")
_UNIT = re.compile(r"\s*(#|\bapt\b|\bunit\b|\bsuite\b|\bste\b).*$")
MAX_RANGE = 50  # a site address "57-61 X St" answers for each number in it, up to this span

Method = Literal["parcel", "street_range"]


@dataclass(frozen=True)
class Geocoded:
    """Where an address or parcel id is (WGS84), and how it was found."""

    lat: float
    lon: float
    address: str | None
    parcel_id: str | None
    method: Method


def normalize_address(text: str) -> tuple[int, int, str] | None:
    """(first number, last number, folded street) of '795 Massachusetts Avenue, Cambridge MA',
    or None when it does not start with a house number."""
    head = text.split(",", 1)[0].strip().lower()
    head = _UNIT.sub("", head)
    m = _ADDRESS.match(head)
    if not m:
        return None
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    words = norm_name(m.group(3)).split()
    if not words:
        return None
    words[-1] = SUFFIXES.get(words[-1], words[-1])
    return min(lo, hi), max(lo, hi), " ".join(words)


class Geocoder:
    """Looks up site addresses and parcel ids of one city (built once, then dict lookups)."""

    def __init__(self, city: CityGeo) -> None:
        self.city = city
        tables = city.layer_tables()
        lots = tables["lots"]
        self._ids = lots["id"]
        self._addresses = lots["address"]
        proj = Projector(city.crs)
        pts = shapely.point_on_surface(lots["geom"]) if len(lots["geom"]) else np.empty(0)
        lon, lat = proj.to_wgs84(shapely.get_x(pts), shapely.get_y(pts))
        self._lat, self._lon = np.asarray(lat, float), np.asarray(lon, float)
        self._by_id = {str(pid): i for i, pid in enumerate(self._ids)}
        self._by_address: dict[tuple[int, str], int] = {}
        for i, addr in enumerate(self._addresses):
            parsed = normalize_address(addr) if addr else None
            if parsed is None:
                continue
            lo, hi, street = parsed
            if hi - lo > MAX_RANGE:
                hi = lo
            for n in range(lo, hi + 1):
                self._by_address.setdefault((n, street), i)
        self._streets = tables.get("streets")
        self._proj = proj
        if self._streets is not None:
            self._street_names = np.array([norm_name(n) for n in self._streets["name"]], object)

    def by_parcel_id(self, parcel_id: str) -> Geocoded | None:
        """The lot with this id (a point inside it), or None."""
        i = self._by_id.get(parcel_id.strip())
        return None if i is None else self._lot(i)

    def by_address(self, text: str) -> Geocoded | None:
        """A site address's lot, else a point interpolated on its street; None if neither."""
        parsed = normalize_address(text)
        if parsed is None:
            return None
        number, _, street = parsed
        i = self._by_address.get((number, street))
        if i is not None:
            return self._lot(i)
        return self._interpolate(number, street)

    def _lot(self, i: int) -> Geocoded:
        return Geocoded(
            lat=float(self._lat[i]),
            lon=float(self._lon[i]),
            address=self._addresses[i],
            parcel_id=str(self._ids[i]),
            method="parcel",
        )

    def _interpolate(self, number: int, street: str) -> Geocoded | None:
        s = self._streets
        if s is None:
            return None
        for k in np.flatnonzero(self._street_names == street):
            for a, b in (("l_from", "l_to"), ("r_from", "r_to")):
                frm, to = float(s[a][k]), float(s[b][k])
                if not (np.isfinite(frm) and np.isfinite(to)):
                    continue
                if min(frm, to) <= number <= max(frm, to) and (frm % 2) == (number % 2):
                    frac = 0.5 if to == frm else (number - frm) / (to - frm)
                    pt = shapely.line_interpolate_point(s["geom"][k], frac, normalized=True)
                    lon, lat = self._proj.to_wgs84(
                        np.array([shapely.get_x(pt)]), np.array([shapely.get_y(pt)])
                    )
                    name = s["name"][k]
                    return Geocoded(
                        lat=float(lat[0]),
                        lon=float(lon[0]),
                        address=f"{number} {name}",
                        parcel_id=None,
                        method="street_range",
                    )
        return None

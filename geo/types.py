"""The validated types `geo` hands on: Fix (where the camera was) and Place (what is there)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

FixSource = Literal["exif", "device", "user"]


def _check_lat_lon(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError(f"coordinates must be finite numbers, got lat={lat!r} lon={lon!r}")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"coordinates out of range: lat={lat} lon={lon}")


@dataclass(frozen=True)
class Fix:
    """The camera's position (WGS84), its accuracy and heading, and where they came from."""

    lat: float
    lon: float
    accuracy_m: float
    source: FixSource
    heading_deg: float | None = None

    def __post_init__(self) -> None:
        _check_lat_lon(self.lat, self.lon)
        if not (math.isfinite(self.accuracy_m) and self.accuracy_m >= 0):
            raise ValueError(f"accuracy_m must be a finite, non-negative number: {self.accuracy_m}")
        if self.heading_deg is not None:
            if not math.isfinite(self.heading_deg):
                raise ValueError(f"heading_deg must be finite: {self.heading_deg}")
            object.__setattr__(self, "heading_deg", self.heading_deg % 360.0)


@dataclass(frozen=True)
class Place:
    """Where an object is and what the city's layers say about that spot."""

    lat: float
    lon: float
    uncertainty_m: float
    in_jurisdiction: bool
    parcel_id: str | None = None
    address: str | None = None
    parcel_use: str | None = None
    parcel_distance_m: float | None = None  # 0 when inside the parcel
    street_id: str | None = None
    street_name: str | None = None
    road_class: str | None = None
    road_owner: str | None = None
    street_distance_m: float | None = None
    interpolated_address: str | None = None
    zip_code: str | None = None
    district: str | None = None
    asset_kind: str | None = None
    asset_id: str | None = None
    asset_distance_m: float | None = None
    outside_place: str | None = None  # when outside the jurisdiction and known
    # The right-of-way (or other unaddressed) polygon the point lies in, e.g. 'ROAD': then the
    # report is about the street, and parcel_id/address name the nearest lot, not that polygon.
    non_lot_id: str | None = None

    def __post_init__(self) -> None:
        _check_lat_lon(self.lat, self.lon)

"""CRS checks and projection: WGS84 for storage, the city's projected CRS for measuring."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyproj
import shapely

from geo.errors import CRSMismatch, LayerError

WGS84 = "EPSG:4326"


def parse_crs(value: object, where: str) -> pyproj.CRS:
    """Parse a CRS given in city.yaml or by a file; LayerError when it is not a CRS."""
    try:
        return pyproj.CRS.from_user_input(value)
    except pyproj.exceptions.CRSError as exc:
        raise LayerError(
            f"{where}: {value!r} is not a CRS; write it as 'EPSG:<code>' in city.yaml"
        ) from exc


def same_crs(a: pyproj.CRS, b: pyproj.CRS) -> bool:
    """Whether two CRSs are the same, ignoring axis order (GeoJSON's CRS84 is EPSG:4326)."""
    return a.equals(b, ignore_axis_order=True)


def check_local_crs(crs: pyproj.CRS, slug: str) -> None:
    """Raise unless the city's measuring CRS is projected, in metres."""
    units = {ax.unit_name for ax in crs.axis_info}
    if not crs.is_projected or not units <= {"metre", "meter"}:
        raise CRSMismatch(
            f"city {slug}: crs {crs.to_string()} is not a projected CRS in metres; set `crs:` in "
            "city.yaml to the city's local projected CRS (e.g. its State Plane zone in metres)"
        )


def layer_crs(name: str, file_crs: str | None, spec_crs: object | None) -> pyproj.CRS:
    """The CRS a layer's coordinates are in: the file's and city.yaml's must agree."""
    declared = parse_crs(spec_crs, f"layers.{name}.crs") if spec_crs is not None else None
    found = parse_crs(file_crs, f"layer {name}") if file_crs else None
    if declared is not None and found is not None and not same_crs(declared, found):
        raise CRSMismatch(
            f"layer {name}: the file declares {found.to_string()} but city.yaml says "
            f"{declared.to_string()}; reproject the file or correct layers.{name}.crs"
        )
    crs = declared or found
    if crs is None:
        raise CRSMismatch(
            f"layer {name}: the file declares no CRS; add `crs:` (e.g. EPSG:4326) under "
            f"layers.{name} in city.yaml"
        )
    return crs


def check_coords_in_crs(name: str, crs: pyproj.CRS, bounds: np.ndarray) -> None:
    """Raise CRSMismatch when a layer's bounds fall outside its CRS's area of use."""
    if not np.all(np.isfinite(bounds)):
        return  # no geometry to judge
    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    if crs.is_geographic:
        lon_lat = (xmin, ymin, xmax, ymax)
    else:
        west, south, east, north = to_wgs84_bounds(crs, bounds)
        lon_lat = (west, south, east, north)
    area = crs.area_of_use
    aw, as_, ae, an = area.bounds if area is not None else (-180.0, -90.0, 180.0, 90.0)
    slack = 1.0  # degrees: areas of use are drawn tight around land
    w, s, e, n = lon_lat
    inside = (
        np.isfinite([w, s, e, n]).all()
        and w >= aw - slack
        and e <= ae + slack
        and s >= as_ - slack
        and n <= an + slack
    )
    if not inside:
        raise CRSMismatch(
            f"layer {name}: its coordinates span x {xmin:.6g}..{xmax:.6g}, "
            f"y {ymin:.6g}..{ymax:.6g}, "
            f"outside where {crs.to_string()} is used; the file is in another CRS: declare the "
            f"right one under layers.{name}.crs in city.yaml, or reproject the file"
        )


def to_wgs84_bounds(crs: pyproj.CRS, bounds: np.ndarray) -> tuple[float, float, float, float]:
    """A projected bounding box as (west, south, east, north) in degrees."""
    tr = _transformer(crs.to_wkt(), pyproj.CRS.from_user_input(WGS84).to_wkt())
    return tuple(tr.transform_bounds(*(float(v) for v in bounds)))  # type: ignore[return-value]


@lru_cache(maxsize=32)
def _transformer(src_wkt: str, dst_wkt: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src_wkt, dst_wkt, always_xy=True)


class Projector:
    """Moves coordinates between WGS84 (lon/lat) and the city's projected CRS (metres)."""

    def __init__(self, local_crs: str) -> None:
        self.local_crs = local_crs
        local = pyproj.CRS.from_user_input(local_crs)
        wgs = pyproj.CRS.from_user_input(WGS84)
        self._fwd = pyproj.Transformer.from_crs(wgs, local, always_xy=True)
        self._inv = pyproj.Transformer.from_crs(local, wgs, always_xy=True)

    def to_local(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 lon/lat arrays to local x/y metres."""
        return self._fwd.transform(lon, lat)

    def to_wgs84(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local x/y metres to WGS84 lon/lat arrays."""
        return self._inv.transform(x, y)

    def project(self, geoms: np.ndarray, src: pyproj.CRS) -> np.ndarray:
        """Project geometries from `src` into the local CRS (all coordinates in one call)."""
        local = pyproj.CRS.from_user_input(self.local_crs)
        if same_crs(src, local):
            return geoms
        tr = _transformer(src.to_wkt(), local.to_wkt())

        def move(xy: np.ndarray) -> np.ndarray:
            x, y = tr.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        return shapely.transform(geoms, move)

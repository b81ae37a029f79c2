"""GeoParquet through pyarrow, for GDAL builds (pyogrio's wheels) that lack the Parquet driver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyproj
import shapely

from geo.errors import LayerError

SUFFIXES = (".parquet", ".geoparquet")
# GeoParquet 1.x: a column without a `crs` key is in OGC:CRS84 (lon/lat WGS84).
DEFAULT_CRS = "OGC:CRS84"


def is_geoparquet(path: Path) -> bool:
    """Whether to read `path` here: a Parquet file that this GDAL cannot open itself."""
    return path.suffix.lower() in SUFFIXES and "Parquet" not in pyogrio.list_drivers()


def _geo_meta(schema: Any, path: Path) -> dict[str, Any] | None:
    raw = (schema.metadata or {}).get(b"geo")
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise LayerError(f"{path}: its GeoParquet `geo` metadata is not JSON ({exc})") from exc


def _crs(col_meta: dict[str, Any]) -> str | None:
    if "crs" not in col_meta:
        return DEFAULT_CRS
    crs = col_meta["crs"]
    if crs is None:
        return None  # explicitly unknown: the importer then asks for one
    value = pyproj.CRS.from_json_dict(crs) if isinstance(crs, dict) else pyproj.CRS(crs)
    code = value.to_epsg()
    return f"EPSG:{code}" if code else value.to_wkt()


def info(path: Path) -> dict[str, Any]:
    """read_info's keys for a GeoParquet file: crs, fields, features, geometry_type, driver."""
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise LayerError(f"{path} is not a readable Parquet file ({exc})") from exc
    schema = f.schema_arrow
    geo = _geo_meta(schema, path)
    gcol = geo.get("primary_column") if geo else None
    meta = (geo or {}).get("columns", {}).get(gcol, {}) if gcol else {}
    types = meta.get("geometry_types") or []
    return {
        "crs": _crs(meta) if gcol else None,
        "fields": [n for n in schema.names if n != gcol],
        "features": f.metadata.num_rows,
        "geometry_type": types[0] if len(types) == 1 else ("Unknown" if gcol else None),
        "driver": "GeoParquet (pyarrow)",
        "geometry_column": gcol,
        "encoding": meta.get("encoding"),
    }


def read(
    path: Path, columns: list[str], read_geometry: bool = True
) -> tuple[dict[str, Any], None, np.ndarray | None, list[np.ndarray]]:
    """pyogrio.raw.read's (meta, fids, wkb, data) for a GeoParquet file (2D WKB)."""
    import pyarrow.parquet as pq

    meta = info(path)
    gcol = meta["geometry_column"]
    if read_geometry and gcol is None:
        raise LayerError(f"{path} has no GeoParquet `geo` metadata, so no geometry column")
    if read_geometry and meta["encoding"] not in (None, "WKB"):
        raise LayerError(
            f"{path}: geometry encoded as {meta['encoding']!r}; write it as WKB "
            "(GeoPandas: to_parquet(geometry_encoding='WKB'))"
        )
    have = [c for c in columns if c in meta["fields"]]
    table = pq.read_table(path, columns=have + ([gcol] if read_geometry else []))
    data = [np.array(table.column(c).to_pylist(), dtype=object) for c in have]
    wkb = None
    if read_geometry:
        wkb = np.array(table.column(gcol).to_pylist(), dtype=object)
        geoms = shapely.from_wkb(wkb, on_invalid="ignore")
        has_z = shapely.has_z(geoms)
        if has_z.any():
            wkb[has_z] = shapely.to_wkb(shapely.force_2d(geoms[has_z]))
    return {"crs": meta["crs"], "fields": np.array(have, dtype=object)}, None, wkb, data

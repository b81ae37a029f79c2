"""Importing a city's own files: check the field mapping against them, validate, load, manifest."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyogrio
import pyogrio.errors
import pyproj

from geo.crs import check_local_crs, layer_crs, parse_crs
from geo.errors import LayerError, LayerNotFound
from geo.index import CityGeo
from geo.layers import load_city
from geo.manifest import build_manifest
from geo.read import LoadReport, source_info

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
POLYGON_TYPES = {"Polygon", "MultiPolygon", "Polygon Z", "MultiPolygon Z", "Unknown"}
LINE_TYPES = {"LineString", "MultiLineString", "LineString Z", "MultiLineString Z", "Unknown"}
POINT_TYPES = {"Point", "Point Z", "Unknown"}
WANT = {"boundary": "polygons", "parcels": "polygons", "streets": "lines", "assets": "points"}

# Per layer: the geometry it must hold, and its field keys with the CLI option that sets each
# (so a message can say which option to use).
KINDS: dict[str, tuple[set[str] | None, dict[str, tuple[str, bool]]]] = {
    "boundary": (POLYGON_TYPES, {}),
    "parcels": (
        POLYGON_TYPES,
        {
            "id_field": ("--parcel-id", True),
            "address_field": ("--parcel-address", False),
            "use_field": ("--parcel-use", False),
        },
    ),
    "addresses": (
        None,
        {
            "key_field": ("--address-key", True),
            "address_field": ("--address-field", True),
            "use_field": ("--address-use", False),
        },
    ),
    "streets": (
        LINE_TYPES,
        {
            "id_field": ("--street-id", True),
            "name_field": ("--street-name", True),
            "class_field": ("--street-class", False),
        },
    ),
    "assets": (POINT_TYPES, {"id_field": ("--asset-id", True), "district_field": ("", False)}),
}


@dataclass
class ImportResult:
    """A validated import: the pack's crs/layers/sources, its manifest and the load report."""

    spec: dict[str, Any]
    manifest: dict[str, Any]
    report: LoadReport
    city: CityGeo


def resolve_source(value: str | Path, data_dir: Path, name: str) -> str:
    """A layer's file as a path relative to the data directory (where packs name layers from)."""
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = next((c for c in (data_dir / p, Path.cwd() / p) if c.exists()), data_dir / p)
    if not p.exists():
        raise LayerNotFound(
            f"layer {name}: {value} does not exist (looked in {data_dir} and the current "
            "folder); give the file's path"
        )
    # Not resolve(): a data directory may hold symlinks to files kept elsewhere.
    here, root = Path(os.path.abspath(p)), Path(os.path.abspath(data_dir))
    try:
        return here.relative_to(root).as_posix()
    except ValueError:
        raise LayerError(
            f"layer {name}: {p} is outside the data directory {data_dir}; a city pack names its "
            "layers relative to it, so put the file there (or point --data-dir / "
            "STREETLENS_DATA_DIR at a folder holding it)"
        ) from None


def _pick_layer(name: str, path: Path, layer: str | None) -> str | None:
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        return None
    try:
        found = [str(r[0]) for r in pyogrio.list_layers(path)]
    except (pyogrio.errors.DataSourceError, OSError) as exc:
        raise LayerError(
            f"layer {name}: {path} is not a vector format GDAL reads ({exc}); export it as "
            "GeoPackage, Shapefile, GeoJSON, File Geodatabase or GeoParquet"
        ) from exc
    if layer is not None and layer not in found:
        raise LayerError(f"layer {name}: {path} has no layer {layer!r}; it has {found}")
    if layer is None and len(found) > 1:
        raise LayerError(
            f"layer {name}: {path} holds several layers {found}; choose one (PATH::LAYER on the "
            f"command line, or `layer:` under layers.{name} in the mapping)"
        )
    return layer


def _canonical_crs(crs: pyproj.CRS, as_given: Any) -> str:
    code = crs.to_epsg(min_confidence=90)
    if code:
        return f"EPSG:{code}"
    auth = crs.to_authority(min_confidence=90)
    return ":".join(auth) if auth else str(as_given or crs.to_wkt())


def check_layer(name: str, kind: str, d: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """One layer's mapping, checked against its file; returned ready for city.yaml."""
    if not isinstance(d, dict) or not d.get("path"):
        raise LayerError(f"layer {name}: give its file (`path:` in the mapping)")
    out = dict(d)
    out["path"] = resolve_source(d["path"], data_dir, name)
    path = data_dir / out["path"]
    layer = _pick_layer(name, path, d.get("layer"))
    if layer is not None:
        out["layer"] = layer
    info = source_info(path, layer)
    geom_types, fields = KINDS[kind]
    gtype = info.get("geometry_type")
    if geom_types is not None:
        if gtype is None:
            raise LayerError(f"layer {name}: {path} has no geometry; {name} must be a map layer")
        if gtype not in geom_types:
            raise LayerError(
                f"layer {name}: {path} holds {gtype} features, but {name} must be "
                f"{WANT[kind]}; is it the right file?"
            )
        declared = d.get("crs")
        crs = layer_crs(name, info.get("crs"), declared)  # raises on a missing or clashing CRS
        out["crs"] = _canonical_crs(crs, declared or info.get("crs"))
    have = [str(f) for f in info.get("fields", [])]
    for key, (option, required) in fields.items():
        value = d.get(key)
        if value is None and required:
            raise LayerError(
                f"layer {name}: which field holds {key.removesuffix('_field')}? give "
                f"{option} FIELD (or {key} in the mapping); the file has: {', '.join(have)}"
            )
        if value is not None and value not in have:
            how = f"{option} or " if option else ""
            raise LayerError(
                f"layer {name}: {path} has no field {value!r}; it has: {', '.join(have)} (fix "
                f"{how}{key} in the mapping)"
            )
    if kind == "streets":
        owner = (d.get("owners") or {}).get("field")
        if owner is not None and owner not in have:
            raise LayerError(
                f"layer {name}: {path} has no field {owner!r} for road ownership (--street-owner);"
                f" it has: {', '.join(have)}"
            )
        for key in ("zip_fields", "range_fields"):
            v = d.get(key) or []
            missing = [f for f in (v.values() if isinstance(v, dict) else v) if f not in have]
            if missing:
                raise LayerError(f"layer {name}: {key} {missing} are not fields of {path}")
    return {k: v for k, v in out.items() if v is not None}


def check_mapping(mapping: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The pack's slug, crs, layers (paths made relative, CRSs explicit) and sources."""
    slug = str(mapping.get("slug") or "")
    if not SLUG.match(slug):
        raise LayerError(
            f"city slug {slug!r} must be lower-case letters, digits and dashes, "
            "e.g. 'coral-gables-fl'"
        )
    if not mapping.get("crs"):
        raise LayerError(
            "give the city's projected CRS in metres (--crs, e.g. EPSG:26958 for Florida East)"
        )
    check_local_crs(parse_crs(mapping["crs"], "crs"), slug)
    layers = mapping.get("layers") or {}
    if not layers.get("boundary"):
        raise LayerError("a city pack needs its boundary: give --boundary PATH")
    unknown = set(layers) - {*KINDS, "district_search_m"}
    if unknown:
        raise LayerError(f"unknown layers {sorted(unknown)}; use {sorted(KINDS)}")
    out: dict[str, Any] = {}
    for key in ("boundary", "parcels", "addresses", "streets"):
        if layers.get(key):
            out[key] = check_layer(key, key, layers[key], data_dir)
    if out.get("addresses") and not out.get("parcels"):
        raise LayerError("an address table is joined to parcels by key: give --parcels as well")
    for kind, d in (layers.get("assets") or {}).items():
        out.setdefault("assets", {})[str(kind)] = check_layer(
            f"assets.{kind}", "assets", d, data_dir
        )
    if "district_search_m" in layers:
        out["district_search_m"] = layers["district_search_m"]
    sources = list(mapping.get("sources") or [])
    for s in sources:
        if not isinstance(s, dict) or not s.get("name"):
            raise LayerError(f"each source needs a name (and url, licence): got {s!r}")
    return {"slug": slug, "crs": str(mapping["crs"]), "layers": out, "sources": sources}


def import_city(
    mapping: dict[str, Any], data_dir: Path, cache_dir: Path | None = None
) -> ImportResult:
    """Check a mapping and load every layer (repairs reported); writes only the index cache."""
    spec = check_mapping(mapping, Path(data_dir))
    city = load_city(spec, Path(data_dir), cache_dir)
    return ImportResult(
        spec=spec,
        manifest=build_manifest(spec, Path(data_dir), city.report),
        report=city.report,
        city=city,
    )

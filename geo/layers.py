"""Loading a city's layers from its city.yaml spec: read, check CRS, repair, project, cache."""

from __future__ import annotations

import logging
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.errors

from geo import cache
from geo.crs import Projector, check_coords_in_crs, check_local_crs, layer_crs, parse_crs
from geo.errors import CRSMismatch, LayerError, LayerNotFound
from geo.index import CityGeo
from geo.read import (
    LayerReport,
    LoadReport,
    RawLayer,
    numbers,
    pad_ids,
    read_table,
    read_vector,
    repair_polygons,
    text,
)
from geo.spec import AssetSpec, CitySpec, StreetSpec, VectorSpec, norm_name, parse_spec

__all__ = ["CityGeo", "LoadReport", "load_city"]

log = logging.getLogger(__name__)

# A layer lying wholly this far from the boundary is in a CRS other than the one it claims.
OVERLAP_SLACK_M = 5000.0


def load_city(spec: dict[str, Any], data_dir: Path, cache_dir: Path | None = None) -> CityGeo:
    """Load and index a city's layers (spec: the parsed city.yaml); cached in cache_dir."""
    t0 = time.perf_counter()
    cs = parse_spec(spec, Path(data_dir))
    check_local_crs(parse_crs(cs.crs, "crs"), cs.slug)
    for p in cs.paths():
        if not p.exists():
            raise LayerNotFound(
                f"{p} does not exist; set the data directory (STREETLENS_DATA_DIR) to the folder "
                f"holding the city's layers, or fix the layer path in city.yaml"
            )
    cache_path = None
    notes: list[str] = []
    if cache_dir is not None:
        key = cache.cache_key(
            {"slug": cs.slug, "crs": cs.crs, "layers": spec.get("layers")}, cs.paths()
        )
        cache_path = Path(cache_dir) / f"geo-{cs.slug}-{key[:24]}.npz"
        if cache_path.exists():
            try:
                tables, meta = cache.load(cache_path)
                report = LoadReport.from_dict(meta["report"])
                report.from_cache, report.cache_path = True, str(cache_path)
                city = CityGeo(cs, tables, report)
                report.seconds = time.perf_counter() - t0
                return city
            except (
                OSError,
                EOFError,
                ValueError,
                KeyError,
                TypeError,
                zipfile.BadZipFile,
                shapely.errors.GEOSException,
            ) as exc:
                # A damaged cache is rebuilt from the sources, never trusted.
                notes.append(f"cache {cache_path} was unreadable ({exc}); rebuilt")
    tables, report = build(cs)
    report.notes[:0] = notes
    if cache_path is not None:
        try:
            report.cache_path = str(cache_path)
            cache.save(
                cache_path,
                tables,
                {"cache_version": cache.CACHE_VERSION, "report": report.to_dict()},
            )
            for old in cache_path.parent.glob(f"geo-{cs.slug}-*.npz"):
                if old != cache_path:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            # The cache only saves time: a read-only cache dir must not stop the city loading.
            report.cache_path = None
            report.notes.append(f"cache not written to {cache_path}: {exc}")
    city = CityGeo(cs, tables, report)
    report.seconds = time.perf_counter() - t0
    for n in report.notes:
        log.info("geo %s: %s", cs.slug, n)
    return city


def build(cs: CitySpec) -> tuple[cache.Tables, LoadReport]:
    """Read every layer from its source file (no cache)."""
    proj = Projector(cs.crs)
    report = LoadReport(slug=cs.slug, crs=cs.crs)
    tables: cache.Tables = {}

    raw, crs = _read(cs.boundary, [])
    labels = np.array([f"feature {i}" for i in range(len(raw.geoms))], dtype=object)
    geoms = _polygons(raw, labels)
    _check_bounds(cs.boundary.name, crs, geoms)
    if not len(geoms):
        raise LayerError(f"layer boundary: {cs.boundary.path} holds no polygon; point it at one")
    boundary = shapely.union_all(proj.project(geoms, crs))
    raw.report.loaded = len(geoms)
    report.layers["boundary"] = raw.report
    tables["boundary"] = {"geom": np.array([boundary], dtype=object)}
    frame = shapely.buffer(shapely.envelope(boundary), OVERLAP_SLACK_M)

    if cs.parcels:
        tables.update(_parcels(cs, proj, frame, report))
    else:
        report.notes.append(
            "no parcel layer: places carry no parcel id or site address (add layers.parcels, "
            "e.g. with `streetlens city import`)"
        )

    if cs.streets:
        tables["streets"] = _streets(cs.streets, proj, frame, report)
    else:
        report.notes.append(
            "no street layer: places carry no street, road class or owner, so routing by road "
            "owner falls to its default rule"
        )

    for kind, a in cs.assets.items():
        tables[f"asset:{kind}"] = _asset(a, proj, frame, report)
    return tables, report


def _parcels(cs: CitySpec, proj: Projector, frame: Any, report: LoadReport) -> cache.Tables:
    ps = cs.parcels
    assert ps is not None
    raw, crs = _read(ps.src, ps.columns(), label_field=ps.id_field)
    ids = pad_ids(text(raw.columns[ps.id_field]), ps.id_digits)
    for i in np.flatnonzero(_none(ids)):
        raw.geoms[i] = None
        raw.report.note("dropped", "missing id", f"feature {i}")
    labels = np.array([v or f"feature {i}" for i, v in enumerate(ids)], dtype=object)
    labels[_none(ids)] = None  # already reported
    geoms = _polygons(raw, labels)
    ids = ids[raw.kept]
    _check_bounds(ps.src.name, crs, geoms)
    geoms = _check_overlap(ps.src.name, proj.project(geoms, crs), frame)
    lot = np.array([ps.is_lot(i) for i in ids], dtype=bool)
    raw.report.loaded = len(geoms)
    raw.report.note_duplicates(ids[lot])  # non-lot ids name kinds (ROAD), not lots
    report.layers["parcels"] = raw.report
    address = np.full(lot.sum(), None, dtype=object)
    use = np.full(lot.sum(), None, dtype=object)
    if cs.addresses:
        address, use = _join_addresses(cs, ids[lot], report)
    elif ps.address_field:
        address = text(raw.columns[ps.address_field])[raw.kept][lot]
        if ps.use_field:
            use = text(raw.columns[ps.use_field])[raw.kept][lot]
        report.notes.append(
            f"addresses: {int(_none(address).sum())} of {len(address)} lots have no "
            f"{ps.address_field}"
        )
    report.notes.append(
        f"parcels: {lot.sum()} lots, {(~lot).sum()} right-of-way/unaddressed polygons "
        f"({', '.join(sorted(set(ids[~lot])))})"
    )
    return {
        "lots": {"geom": geoms[lot], "id": ids[lot], "address": address, "use": use},
        "nonlots": {"geom": geoms[~lot], "id": ids[~lot]},
    }


def _read(
    src: VectorSpec, columns: list[str], label_field: str | None = None
) -> tuple[RawLayer, Any]:
    raw = read_vector(src.name, src.path, columns, layer=src.layer, label_field=label_field)
    return raw, layer_crs(src.name, raw.file_crs, src.crs)


def _none(a: np.ndarray) -> np.ndarray:
    return np.array([v is None for v in a], dtype=bool)


def _polygons(raw: RawLayer, labels: np.ndarray) -> np.ndarray:
    """Repaired polygons, dropping (and reporting) what cannot be kept; sets raw.kept."""
    for i in np.flatnonzero(shapely.is_missing(raw.geoms) & ~_none(labels)):
        raw.report.note("dropped", "no geometry, or none that decodes", str(labels[i]))
        labels[i] = None
    geoms = repair_polygons(raw.geoms, labels, raw.report)
    raw.kept = ~shapely.is_missing(geoms)
    return geoms[raw.kept]


def _check_bounds(name: str, crs: Any, geoms: np.ndarray) -> None:
    if len(geoms):
        check_coords_in_crs(name, crs, shapely.total_bounds(geoms))


def _check_overlap(name: str, geoms: np.ndarray, frame: shapely.Geometry) -> np.ndarray:
    if len(geoms) and not shapely.intersects(shapely.box(*shapely.total_bounds(geoms)), frame):
        raise CRSMismatch(
            f"layer {name}: once projected it lies far from the city boundary, so one of the two "
            f"is not in the CRS city.yaml says; check layers.{name}.crs and layers.boundary.crs"
        )
    return geoms


def _join_addresses(
    cs: CitySpec, lot_ids: np.ndarray, report: LoadReport
) -> tuple[np.ndarray, np.ndarray]:
    a = cs.addresses
    assert a is not None
    cols = [a.key_field, a.address_field] + ([a.use_field] if a.use_field else [])
    data, n = read_table("addresses", a.path, list(dict.fromkeys(cols)))
    rep = LayerReport(name="addresses", path=str(a.path), features=n)
    keys, addrs = text(data[a.key_field]), text(data[a.address_field])
    uses = text(data[a.use_field]) if a.use_field else np.full(n, None, dtype=object)
    first: dict[str, tuple[str | None, str | None]] = {}
    shared = 0
    for i in range(n):
        k = keys[i]
        if k is None:
            rep.note("dropped", "missing key", f"row {i + 2}")
            continue
        if addrs[i] is None:
            rep.note("dropped", "missing address", f"row {i + 2}")
            continue
        if k in first:
            shared += 1
            continue
        # Several rows share a key (a condo building and its units): the file's first row is
        # the building's own address in Cambridge's table, and file order is deterministic.
        first[k] = (addrs[i], uses[i])
    rep.loaded = len(first)
    report.layers["addresses"] = rep
    address = np.array([first.get(k, (None, None))[0] for k in lot_ids], dtype=object)
    use = np.array([first.get(k, (None, None))[1] for k in lot_ids], dtype=object)
    unaddressed = sorted({k for k in lot_ids if k not in first})
    report.notes.append(
        f"addresses: {shared} rows share a key with an earlier row (first kept); "
        f"{len(unaddressed)} lot ids have no address (e.g. {', '.join(unaddressed[:5])})"
    )
    return address, use


def _streets(s: StreetSpec, proj: Projector, frame: Any, report: LoadReport) -> dict:
    raw, crs = _read(s.src, s.columns())
    c = raw.columns
    ok = ~shapely.is_missing(raw.geoms)
    ok &= np.isin(shapely.get_type_id(raw.geoms), (1, 2, 5))
    ok &= ~shapely.is_empty(raw.geoms)
    for i in np.flatnonzero(~ok):
        raw.report.note("dropped", "not a line", f"feature {i}")
    geoms = raw.geoms[ok]
    _check_bounds(s.src.name, crs, geoms)
    geoms = _check_overlap(s.src.name, proj.project(geoms, crs), frame)
    ids, names = text(c[s.id_field])[ok], text(c[s.name_field])[ok]
    unnamed = [str(i) for i, n in zip(ids, names, strict=True) if n is None]
    if unnamed:
        report.notes.append(
            f"streets: {len(unnamed)} segments have no {s.name_field} (e.g. "
            f"{', '.join(unnamed[:5])}): lookups there give no street name or address"
        )
    codes = text(c[s.class_field])[ok] if s.class_field else np.full(len(geoms), None, object)
    cls = np.array([s.class_names.get(k, k) if s.class_names else k for k in codes], dtype=object)
    owner = _owners(s, c, ok, names, report)
    seen = {norm_name(n) for n in names}
    unmatched = [s.owner_names[k] for k in s.owners_by_name if k not in seen]
    if unmatched:
        report.notes.append(
            f"streets: owners.by_name {unmatched} match no street name in the layer; "
            "spell them as the layer's name field does"
        )
    nan = np.full(len(geoms), None, object)
    zl, zr = (text(c[f])[ok] for f in s.zip_fields) if s.zip_fields else (nan, nan)
    table = {
        "geom": geoms,
        "id": ids,
        "name": names,
        "cls": cls,
        "owner": owner,
        "zip_l": zl,
        "zip_r": zr,
    }
    for k in ("l_from", "l_to", "r_from", "r_to"):
        f = (s.range_fields or {}).get(k)
        table[k] = numbers(c[f])[ok] if f else np.full(len(geoms), np.nan)
    raw.report.loaded = len(geoms)
    raw.report.note_duplicates(ids)
    report.layers["streets"] = raw.report
    return table


def _owners(
    s: StreetSpec, c: dict[str, np.ndarray], ok: np.ndarray, names: np.ndarray, report: LoadReport
) -> np.ndarray:
    """Who maintains each segment: a by_name entry, else the owner field's value, else default."""
    field = text(c[s.owner_field])[ok] if s.owner_field else np.full(len(names), None, object)
    out = np.empty(len(names), dtype=object)
    unmapped: dict[str, int] = {}
    for i, (n, v) in enumerate(zip(names, field, strict=True)):
        named = s.owners_by_name.get(norm_name(n))
        if named is not None:
            out[i] = named
        elif v is not None:
            out[i] = s.owner_values.get(v, v)
            if s.owner_values and v not in s.owner_values:
                unmapped[v] = unmapped.get(v, 0) + 1
        else:
            out[i] = s.owner_default
    if unmapped:
        report.notes.append(
            f"streets: {s.owner_field} values {sorted(unmapped)} are not in owners.values; they "
            "are kept as written, so no routing rule on road_owner will match them"
        )
    return out


def _asset(a: AssetSpec, proj: Projector, frame: Any, report: LoadReport) -> dict:
    cols = [a.id_field] + ([a.district_field] if a.district_field else [])
    raw, crs = _read(a.src, list(dict.fromkeys(cols)))
    ok = ~shapely.is_missing(raw.geoms) & (shapely.get_type_id(raw.geoms) == 0)
    ok &= ~shapely.is_empty(raw.geoms)
    ids = text(raw.columns[a.id_field])
    for i in np.flatnonzero(~ok):
        raw.report.note("dropped", "not a point", f"feature {i}")
    for i in np.flatnonzero(ok & _none(ids)):
        ok[i] = False
        raw.report.note("dropped", "missing id", f"feature {i}")
    geoms = raw.geoms[ok]
    _check_bounds(a.src.name, crs, geoms)
    geoms = _check_overlap(a.src.name, proj.project(geoms, crs), frame)
    district = np.full(len(geoms), None, object)
    if a.district_field:
        district = text(raw.columns[a.district_field])[ok]
        district[np.isin(district, list(a.district_missing))] = None
    raw.report.loaded = len(geoms)
    raw.report.note_duplicates(ids[ok])
    report.layers[f"assets.{a.kind}"] = raw.report
    return {"geom": geoms, "id": ids[ok], "district": district}

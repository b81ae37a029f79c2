"""Reading city layers with pyogrio (any OGR format), repairing what real data gets wrong."""

from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyogrio.errors
import shapely

from geo import parquet
from geo.errors import LayerError, LayerNotFound

POLYGONAL = (3, 6)  # shapely type ids: Polygon, MultiPolygon
LINEAR = (1, 2, 5)  # LineString, LinearRing, MultiLineString
MAX_EXAMPLES = 5


@dataclass
class LayerReport:
    """What loading one layer found: features read, repaired and dropped (with reasons)."""

    name: str
    path: str
    features: int = 0
    loaded: int = 0
    repaired: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few feature labels
    duplicate_ids: int = 0  # distinct ids held by more than one kept feature
    duplicates: dict[str, int] = field(default_factory=dict)  # the most repeated ids -> count

    def note(self, kind: str, reason: str, label: str) -> None:
        """Count one repaired or dropped feature under `reason`."""
        if kind == "dropped":
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
        else:
            self.repaired += 1
        ex = self.examples.setdefault(f"{kind}: {reason}", [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(label)

    @property
    def dropped_total(self) -> int:
        """Features left out, all reasons together."""
        return sum(self.dropped.values())

    def note_duplicates(self, ids: np.ndarray) -> None:
        """Count ids that more than one feature carries (reported, not fatal: multipart lots)."""
        present = np.array([v for v in ids if v is not None], dtype=str)
        if not len(present):
            return
        values, counts = np.unique(present, return_counts=True)
        many = counts > 1
        self.duplicate_ids = int(many.sum())
        order = np.lexsort((values[many], -counts[many]))[:MAX_EXAMPLES]
        self.duplicates = {str(values[many][i]): int(counts[many][i]) for i in order}


@dataclass
class LoadReport:
    """What `load_city` read, repaired and dropped, per layer, and how long it took."""

    slug: str
    crs: str
    layers: dict[str, LayerReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    from_cache: bool = False
    cache_path: str | None = None
    seconds: float = 0.0

    @property
    def features(self) -> int:
        """Features read from every layer."""
        return sum(r.features for r in self.layers.values())

    @property
    def repaired(self) -> int:
        """Features repaired (invalid or degenerate geometry made valid), every layer."""
        return sum(r.repaired for r in self.layers.values())

    @property
    def dropped(self) -> int:
        """Features left out, every layer."""
        return sum(r.dropped_total for r in self.layers.values())

    def summary(self) -> str:
        """One line per layer, for logs and the CLI."""
        src = f"cache {self.cache_path}" if self.from_cache else "source files"
        lines = [f"{self.slug} ({self.crs}) from {src} in {self.seconds:.2f} s"]
        for r in self.layers.values():
            why = ", ".join(f"{k}: {v}" for k, v in sorted(r.dropped.items())) or "none"
            dup = ""
            if r.duplicate_ids:
                ex = ", ".join(f"{k} ×{v}" for k, v in r.duplicates.items())
                dup = f"; {r.duplicate_ids} ids on more than one feature (e.g. {ex})"
            lines.append(
                f"  {r.name}: {r.features} read, {r.loaded} kept, {r.repaired} repaired, "
                f"dropped {why}{dup}"
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for the cache."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadReport:
        """Rebuild from `to_dict`."""
        layers = {k: LayerReport(**v) for k, v in d.get("layers", {}).items()}
        return cls(**{**d, "layers": layers})


@dataclass
class RawLayer:
    """One layer as read: geometries in the file's CRS, chosen columns, the file's CRS."""

    geoms: np.ndarray
    columns: dict[str, np.ndarray]
    file_crs: str | None
    report: LayerReport
    kept: np.ndarray | None = None  # which features survived repair, once known


def _open_error(name: str, path: Path, exc: Exception) -> LayerError:
    return LayerError(
        f"layer {name}: {path} could not be read ({exc}); check layers.{name}.path in city.yaml "
        "and that the file is a vector format GDAL reads"
    )


def read_vector(
    name: str,
    path: Path,
    columns: list[str],
    *,
    layer: str | int | None = None,
    label_field: str | None = None,
) -> RawLayer:
    """Read a vector layer's geometries (leniently decoded) and the named columns."""
    if not path.exists():
        raise LayerNotFound(
            f"layer {name}: {path} does not exist; put the file in the data directory or fix "
            f"layers.{name}.path in city.yaml"
        )
    try:
        if parquet.is_geoparquet(path):
            meta, _fids, wkb, data = parquet.read(path, columns)
        else:
            meta, _fids, wkb, data = pyogrio.raw.read(
                path, layer=layer, columns=columns, force_2d=True
            )
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise _open_error(name, path, exc) from exc
    cols = _columns(name, path, meta, data, columns, layer)
    report = LayerReport(name=name, path=str(path), features=len(wkb) if wkb is not None else 0)
    if wkb is None:
        raise LayerError(f"layer {name}: {path} has no geometry; point the layer at a vector file")
    labels = cols[label_field] if label_field else None
    return RawLayer(_decode(wkb, report, labels), cols, meta.get("crs"), report)


def source_info(path: Path, layer: str | int | None = None) -> dict[str, Any]:
    """A layer's CRS, fields, feature count, geometry type and driver, without reading it."""
    if parquet.is_geoparquet(path):
        return parquet.info(path)
    return pyogrio.read_info(path, layer=layer)


def read_table(name: str, path: Path, columns: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """Read the named columns of a table (CSV or any OGR layer), ignoring geometry."""
    if not path.exists():
        raise LayerNotFound(
            f"layer {name}: {path} does not exist; put the file in the data directory or fix "
            f"layers.{name}.path in city.yaml"
        )
    try:
        if parquet.is_geoparquet(path):
            meta, _fids, _wkb, data = parquet.read(path, columns, read_geometry=False)
        else:
            meta, _fids, _wkb, data = pyogrio.raw.read(path, columns=columns, read_geometry=False)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise _open_error(name, path, exc) from exc
    cols = _columns(name, path, meta, data, columns, None)
    n = len(next(iter(cols.values()))) if cols else 0
    return cols, n


def _columns(
    name: str, path: Path, meta: dict, data: list, wanted: list[str], layer: str | int | None
) -> dict[str, np.ndarray]:
    have = list(meta["fields"])
    missing = [c for c in wanted if c not in have]
    if missing:
        try:
            every = list(source_info(path, layer)["fields"])
        except Exception:  # only for the message: the read itself already worked
            every = have
        raise LayerError(
            f"layer {name}: {path} has no field {', '.join(map(repr, missing))} (it has: "
            f"{', '.join(every)}); fix the field names under layers.{name} in city.yaml"
        )
    return {c: data[have.index(c)] for c in wanted}


def _decode(wkb: np.ndarray, report: LayerReport, labels: np.ndarray | None) -> np.ndarray:
    geoms = shapely.from_wkb(wkb, on_invalid="ignore")
    for i in np.flatnonzero(shapely.is_missing(geoms) & np.array([w is not None for w in wkb])):
        # GEOS refuses a ring of fewer than 2 points outright; drop just that ring, keep the rest.
        g = _decode_polygonal_lenient(bytes(wkb[i]))
        if g is not None:
            geoms[i] = g
            label = labels[i] if labels is not None and labels[i] else f"feature {i}"
            report.note("repaired", "degenerate ring removed", str(label))
    return geoms


def _decode_polygonal_lenient(buf: bytes) -> shapely.Geometry | None:
    """Decode 2D (Multi)Polygon WKB, skipping rings too short to enclose anything."""
    pos = 0

    def header() -> tuple[str, int]:
        nonlocal pos
        end = "<" if buf[pos] == 1 else ">"
        (kind,) = struct.unpack_from(end + "I", buf, pos + 1)
        pos += 5
        return end, kind

    def count(end: str) -> int:
        nonlocal pos
        (n,) = struct.unpack_from(end + "I", buf, pos)
        pos += 4
        return n

    def polygon(end: str) -> list[np.ndarray]:
        nonlocal pos
        rings = []
        for _ in range(count(end)):
            n = count(end)
            xy = np.frombuffer(buf, dtype=end + "f8", count=2 * n, offset=pos)
            rings.append(xy.reshape(-1, 2))
            pos += 16 * n
        return rings

    try:
        end, kind = header()
        if kind == 3:
            parts = [polygon(end)]
        elif kind == 6:
            parts = []
            for _ in range(count(end)):
                e, k = header()
                if k != 3:
                    return None
                parts.append(polygon(e))
        else:
            return None
    except (struct.error, ValueError, IndexError):
        return None
    polys = [
        shapely.Polygon(rings[0], [r for r in rings[1:] if len(r) >= 4])
        for rings in parts
        if rings and len(rings[0]) >= 4
    ]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def repair_polygons(geoms: np.ndarray, labels: np.ndarray, report: LayerReport) -> np.ndarray:
    """Make invalid polygons valid (polygonal parts only); None where nothing is left."""
    out = geoms.copy()
    present = ~shapely.is_missing(out)
    bad = np.flatnonzero(present & ~shapely.is_valid(out))
    if len(bad):
        fixed = shapely.make_valid(out[bad], method="structure", keep_collapsed=False)
        for j, i in enumerate(bad):
            g = _polygonal_part(fixed[j])
            if g is None or g.is_empty or g.area <= 0:
                out[i] = None
                report.note("dropped", "degenerate ring (no area)", str(labels[i]))
            else:
                out[i] = g
                report.note("repaired", "invalid polygon made valid", str(labels[i]))
    wrong = present & ~shapely.is_missing(out)
    types = shapely.get_type_id(out)
    for i in np.flatnonzero(wrong & ~np.isin(types, POLYGONAL)):
        out[i] = None
        report.note("dropped", "not a polygon", str(labels[i]))
    return out


def _polygonal_part(g: shapely.Geometry | None) -> shapely.Geometry | None:
    if g is None or shapely.get_type_id(g) in POLYGONAL:
        return g
    parts = [p for p in shapely.get_parts(g) if shapely.get_type_id(p) in POLYGONAL]
    return shapely.union_all(parts) if parts else None


def text(values: np.ndarray | list) -> np.ndarray:
    """Field values as stripped strings, None where missing (None, NaN, blank); 2.0 → '2'."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out[i] = None
        elif isinstance(v, float | np.floating) and float(v).is_integer():
            out[i] = str(int(v))
        else:
            s = str(v).strip()
            out[i] = s or None
    return out


def pad_ids(ids: np.ndarray, digits: int | None) -> np.ndarray:
    """Zero-pad ids made of digits only to `digits` (leading zeros lost to a numeric field)."""
    if not digits:
        return ids
    out = ids.copy()
    for i, v in enumerate(ids):
        if v is not None and v.isdigit() and len(v) < digits:
            out[i] = v.zfill(digits)
    return out


def numbers(values: np.ndarray | list) -> np.ndarray:
    """Field values as floats, NaN where missing or not a number."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        try:
            out[i] = float(v) if v is not None and str(v).strip() != "" else np.nan
        except (TypeError, ValueError):
            out[i] = np.nan
    return out

"""The `crs:` and `layers:` sections of city.yaml, checked once; messages say what to fix."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geo.errors import LayerError

# How far (metres) a lookup reaches when the spec says nothing; `search_m` overrides each.
PARCEL_SEARCH_M = 30.0
STREET_SEARCH_M = 100.0
ASSET_SEARCH_M = 50.0
DISTRICT_SEARCH_M = 150.0


def _need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d or d[key] in (None, ""):
        raise LayerError(f"city.yaml {where} lacks `{key}`; add it")
    return d[key]


def norm_name(name: str | None) -> str:
    """A street name folded for matching: case, punctuation and spacing ignored."""
    return " ".join(re.sub(r"[^a-z0-9 ]", "", (name or "").lower()).split())


@dataclass(frozen=True)
class VectorSpec:
    """Where a vector layer is and what CRS city.yaml says it is in."""

    name: str
    path: Path
    crs: str | None
    layer: str | None  # inside a multi-layer source (GeoPackage), else None

    @classmethod
    def parse(cls, name: str, d: dict[str, Any], data_dir: Path) -> VectorSpec:
        """Read path/crs/layer of `layers.<name>`."""
        return cls(
            name=name,
            path=data_dir / str(_need(d, "path", f"layers.{name}")),
            crs=d.get("crs"),
            layer=d.get("layer"),
        )


@dataclass(frozen=True)
class ParcelSpec:
    """The parcel layer: id field, which ids are not lots, how far to look for a lot."""

    src: VectorSpec
    id_field: str
    non_lot_ids: frozenset[str]
    non_lot_pattern: re.Pattern[str] | None
    search_m: float
    # Numeric ids written as numbers lose leading zeros (a Miami-Dade folio "0341..." read as
    # 341...): ids of digits only are zero-padded back to this width.
    id_digits: int | None = None
    address_field: str | None = None  # site address on the parcel layer itself (county exports)
    use_field: str | None = None

    def columns(self) -> list[str]:
        """The fields to read."""
        cols = [self.id_field, self.address_field, self.use_field]
        return list(dict.fromkeys(c for c in cols if c))

    def is_lot(self, pid: str) -> bool:
        """Whether an id names an addressable lot (not right-of-way, water, ...)."""
        if pid in self.non_lot_ids:
            return False
        return not (self.non_lot_pattern and self.non_lot_pattern.search(pid))


@dataclass(frozen=True)
class AddressSpec:
    """The site-address table, joined to parcels by key."""

    path: Path
    key_field: str
    address_field: str
    use_field: str | None


@dataclass(frozen=True)
class StreetSpec:
    """The street centerline layer and how to read its fields."""

    src: VectorSpec
    id_field: str
    name_field: str
    class_field: str | None
    class_names: dict[str | None, str]
    zip_fields: tuple[str, str] | None
    range_fields: dict[str, str] | None  # l_from, l_to, r_from, r_to
    owner_default: str | None
    owners_by_name: dict[str, str]  # folded name -> owner
    owner_names: dict[str, str]  # folded name -> as written in city.yaml
    search_m: float
    owner_field: str | None = None  # a field naming who maintains the road (county exports)
    owner_values: dict[str, str] = field(default_factory=dict)  # field value -> owner code

    def columns(self) -> list[str]:
        """The fields to read."""
        cols = [self.id_field, self.name_field]
        if self.class_field:
            cols.append(self.class_field)
        if self.owner_field:
            cols.append(self.owner_field)
        cols += list(self.zip_fields or ())
        cols += list((self.range_fields or {}).values())
        return list(dict.fromkeys(cols))


@dataclass(frozen=True)
class AssetSpec:
    """A point asset layer (streetlights, hydrants...): id, optional district code."""

    kind: str
    src: VectorSpec
    id_field: str
    district_field: str | None
    district_missing: frozenset[str]
    search_m: float


@dataclass(frozen=True)
class CitySpec:
    """Everything `load_city` needs from city.yaml."""

    slug: str
    crs: str
    boundary: VectorSpec
    parcels: ParcelSpec | None
    addresses: AddressSpec | None
    streets: StreetSpec | None
    assets: dict[str, AssetSpec] = field(default_factory=dict)
    district_search_m: float = DISTRICT_SEARCH_M

    @property
    def district_asset(self) -> str | None:
        """The asset kind whose points carry a district code, if any."""
        return next((k for k, a in self.assets.items() if a.district_field), None)

    def paths(self) -> list[Path]:
        """Every source file, for the cache key."""
        out = [self.boundary.path]
        if self.parcels:
            out.append(self.parcels.src.path)
        if self.addresses:
            out.append(self.addresses.path)
        if self.streets:
            out.append(self.streets.src.path)
        out += [a.src.path for a in self.assets.values()]
        return out


def parse_spec(spec: dict[str, Any], data_dir: Path) -> CitySpec:
    """Check the parsed city.yaml and resolve its layer paths under `data_dir`."""
    if not isinstance(spec, dict):
        raise LayerError("the city spec must be the parsed city.yaml mapping")
    slug = str(_need(spec, "slug", "top level"))
    crs = str(_need(spec, "crs", "top level"))
    layers = _need(spec, "layers", "top level")
    if not isinstance(layers, dict):
        raise LayerError("city.yaml `layers:` must be a mapping of layer name to its description")
    boundary = VectorSpec.parse("boundary", _need(layers, "boundary", "layers"), data_dir)
    parcels = addresses = streets = None
    if p := layers.get("parcels"):
        pattern = p.get("non_lot_pattern")
        try:
            compiled = re.compile(pattern) if pattern else None
        except re.error as exc:
            msg = f"layers.parcels.non_lot_pattern is not a regex ({exc}); fix it"
            raise LayerError(msg) from exc
        parcels = ParcelSpec(
            src=VectorSpec.parse("parcels", p, data_dir),
            id_field=str(_need(p, "id_field", "layers.parcels")),
            non_lot_ids=frozenset(str(v) for v in p.get("non_lot_ids") or ()),
            non_lot_pattern=compiled,
            search_m=float(p.get("search_m", PARCEL_SEARCH_M)),
            id_digits=_digits(p.get("id_digits")),
            address_field=p.get("address_field"),
            use_field=p.get("use_field"),
        )
    if a := layers.get("addresses"):
        if parcels is not None and parcels.address_field:
            raise LayerError(
                "city.yaml gives both layers.addresses and layers.parcels.address_field; keep "
                "one source of site addresses"
            )
        addresses = AddressSpec(
            path=data_dir / str(_need(a, "path", "layers.addresses")),
            key_field=str(_need(a, "key_field", "layers.addresses")),
            address_field=str(_need(a, "address_field", "layers.addresses")),
            use_field=a.get("use_field"),
        )
    if s := layers.get("streets"):
        streets = _street_spec(s, data_dir)
    assets = {}
    for kind, d in (layers.get("assets") or {}).items():
        assets[str(kind)] = AssetSpec(
            kind=str(kind),
            src=VectorSpec.parse(f"assets.{kind}", d, data_dir),
            id_field=str(_need(d, "id_field", f"layers.assets.{kind}")),
            district_field=d.get("district_field"),
            district_missing=frozenset(str(v) for v in d.get("district_missing") or ()),
            search_m=float(d.get("search_m", ASSET_SEARCH_M)),
        )
    return CitySpec(
        slug=slug,
        crs=crs,
        boundary=boundary,
        parcels=parcels,
        addresses=addresses,
        streets=streets,
        assets=assets,
        district_search_m=float(layers.get("district_search_m", DISTRICT_SEARCH_M)),
    )


def _digits(v: Any) -> int | None:
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 64:
        raise LayerError(f"layers.parcels.id_digits must be a whole number of digits, got {v!r}")
    return v


def _street_spec(s: dict[str, Any], data_dir: Path) -> StreetSpec:
    zips = s.get("zip_fields")
    if zips is not None and len(zips) != 2:
        raise LayerError("layers.streets.zip_fields must list two fields: [left, right]")
    ranges = s.get("range_fields")
    if ranges is not None:
        missing = {"l_from", "l_to", "r_from", "r_to"} - set(ranges)
        if missing:
            raise LayerError(f"layers.streets.range_fields lacks {sorted(missing)}; add them")
    owners = s.get("owners") or {}
    by_name = owners.get("by_name") or {}
    return StreetSpec(
        src=VectorSpec.parse("streets", s, data_dir),
        id_field=str(_need(s, "id_field", "layers.streets")),
        name_field=str(_need(s, "name_field", "layers.streets")),
        class_field=s.get("class_field"),
        class_names={
            (None if k is None else str(k)): str(v) for k, v in (s.get("class_names") or {}).items()
        },
        zip_fields=tuple(zips) if zips else None,  # type: ignore[arg-type]
        range_fields=dict(ranges) if ranges else None,
        owner_default=owners.get("default"),
        owners_by_name={norm_name(k): str(v) for k, v in by_name.items()},
        owner_names={norm_name(k): str(k) for k in by_name},
        search_m=float(s.get("search_m", STREET_SEARCH_M)),
        owner_field=owners.get("field"),
        owner_values={str(k): str(v) for k, v in (owners.get("values") or {}).items()},
    )

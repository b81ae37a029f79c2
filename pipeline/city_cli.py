"""`streetlens city import` and `streetlens city check`: city packs from a city's own GIS files."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pipeline.city import load_city_pack
from pipeline.errors import ConfigError
from pipeline.settings import Settings

CITY_HEADER = (
    "# City pack: {name}. Layers written by `streetlens city import`; they are read from the\n"
    "# data directory (STREETLENS_DATA_DIR), never committed. A re-import keeps services/routing.\n"
)
MANIFEST_HEADER = (
    "# Layer manifest of this city pack, written by `streetlens city import` (or `city check\n"
    "# --write-manifest`): where each source is, its size, sha256 and feature counts, and what\n"
    "# loading repaired or dropped. `streetlens city check SLUG` compares the files against it.\n"
)
# A new pack's services and routing: a start that a city edits (road owners, departments, SLAs).
DEFAULT_SERVICES = [
    {"code": "pothole", "name": "Pothole", "group": "Streets", "detector_class": "pothole",
     "description": "A hole or sunken patch in the road surface.",
     "keywords": ["pothole", "road", "asphalt"]},
    {"code": "graffiti", "name": "Graffiti", "group": "Sanitation", "detector_class": "graffiti",
     "description": "Paint or marker on a wall, shutter, sign or other surface.",
     "keywords": ["graffiti", "tag", "vandalism"]},
    {"code": "streetlight", "name": "Streetlight out", "group": "Streets",
     "description": "A streetlight that is dark, flickering or damaged.",
     "keywords": ["streetlight", "light", "lamp"]},
    {"code": "other", "name": "Other street problem", "group": "General",
     "description": "Anything else on a street or sidewalk.", "keywords": ["other"]},
]  # fmt: skip
DEFAULT_ROUTING = [
    {"when": {"in_jurisdiction": False}, "department": "outside-jurisdiction", "sla_hours": 0},
    {"when": {"category": "pothole"}, "department": "Public Works — Streets", "sla_hours": 48},
    {"when": {"category": "graffiti"}, "department": "Public Works — Graffiti", "sla_hours": 72},
    {"when": {"category": "streetlight"}, "department": "Public Works — Street Lighting",
     "sla_hours": 120},
    {"when": {}, "department": "311 Triage", "sla_hours": 72},
]  # fmt: skip
ORDER = ("slug", "name", "jurisdiction_id", "timezone", "crs", "demo_streets", "layers", "sources")


def _source(value: str) -> tuple[str, str | None]:
    """PATH or PATH::LAYER (a layer inside a GeoPackage or File Geodatabase)."""
    path, _, layer = value.partition("::")
    return path, layer or None


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        k, sep, val = v.partition("=")
        if not sep or not k or not val:
            raise ConfigError(f"{what} takes KEY=VALUE, got {v!r}")
        out[k] = val
    return out


def _set(d: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        d[key] = value


def _layer(layers: dict[str, Any], name: str, path: str | None, crs: str | None) -> dict:
    d = layers.setdefault(name, {})
    if path:
        d["path"], layer = _source(path)
        _set(d, "layer", layer)
    _set(d, "crs", crs)
    return d


def mapping_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The field mapping: the --mapping YAML, then every option given on top of it."""
    m: dict[str, Any] = {}
    if args.mapping:
        try:
            m = yaml.safe_load(args.mapping.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"mapping {args.mapping}: cannot read it ({exc})") from exc
        if not isinstance(m, dict):
            raise ConfigError(f"mapping {args.mapping}: must be a YAML mapping (see README)")
    m["slug"] = args.slug
    for key in ("name", "crs", "timezone", "jurisdiction_id"):
        _set(m, key, getattr(args, key))
    layers = m.setdefault("layers", {}) or {}
    m["layers"] = layers
    if args.boundary or args.boundary_crs:
        _layer(layers, "boundary", args.boundary, args.boundary_crs)
    if args.parcels or args.parcels_crs or args.parcel_id or args.parcel_address:
        p = _layer(layers, "parcels", args.parcels, args.parcels_crs)
        _set(p, "id_field", args.parcel_id)
        _set(p, "id_digits", args.parcel_id_digits)
        _set(p, "address_field", args.parcel_address)
        _set(p, "use_field", args.parcel_use)
        if args.non_lot_ids:
            p["non_lot_ids"] = [v for v in args.non_lot_ids.split(",") if v]
    if args.addresses:
        a = _layer(layers, "addresses", args.addresses, None)
        _set(a, "key_field", args.address_key)
        _set(a, "address_field", args.address_field)
        _set(a, "use_field", args.address_use)
    if args.streets or args.streets_crs or args.street_id:
        s = _layer(layers, "streets", args.streets, args.streets_crs)
        for key, opt in (("id_field", "street_id"), ("name_field", "street_name")):
            _set(s, key, getattr(args, opt))
        _set(s, "class_field", args.street_class)
        if args.street_zip:
            s["zip_fields"] = args.street_zip.split(",")
        if args.street_ranges:
            keys = ("l_from", "l_to", "r_from", "r_to")
            s["range_fields"] = dict(zip(keys, args.street_ranges.split(","), strict=False))
        owners = s.setdefault("owners", {})
        _set(owners, "field", args.street_owner)
        _set(owners, "default", args.owner_default)
        if args.owner_value:
            owners["values"] = {
                **owners.get("values", {}),
                **_pairs(args.owner_value, "--owner-value"),
            }
        if not owners:
            del s["owners"]
    assets = _pairs(args.asset, "--asset")
    ids = _pairs(args.asset_id, "--asset-id")
    for kind, path in assets.items():
        d = _layer(layers.setdefault("assets", {}), kind, path, None)
        _set(d, "id_field", ids.get(kind))
    for v in args.source or []:
        name, url, licence = ([*v.split("|"), "", ""])[:3]
        m.setdefault("sources", []).append(
            {"name": name.strip(), "url": url.strip() or None, "licence": licence.strip() or None}
        )
    return m


def _write_yaml(path: Path, header: str, data: dict[str, Any]) -> None:
    """Write atomically, so a failed run leaves the old pack whole."""
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(header + body)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pack_spec(old: dict[str, Any] | None, imported: dict[str, Any], m: dict) -> dict[str, Any]:
    """city.yaml after an import: imported crs/layers/sources over the old pack (or defaults)."""
    base: dict[str, Any] = (
        dict(old)
        if old
        else {
            "name": m.get("name") or imported["slug"],
            "services": DEFAULT_SERVICES,
            "routing": DEFAULT_ROUTING,
        }
    )
    base.update({"slug": imported["slug"], "crs": imported["crs"], "layers": imported["layers"]})
    for key in ("name", "timezone", "jurisdiction_id"):
        _set(base, key, m.get(key))
    if imported["sources"] or "sources" not in base:
        base["sources"] = imported["sources"]
    return {k: base[k] for k in ORDER if k in base} | {
        k: v for k, v in base.items() if k not in ORDER
    }


def _settings(args: argparse.Namespace) -> Settings:
    over: dict[str, Any] = {}
    _set(over, "data_dir", args.data_dir)
    _set(over, "cities_dir", args.cities_dir)
    return Settings(**over)


def cmd_city_import(args: argparse.Namespace) -> int:
    """Build or update a city pack from the city's own files."""
    from geo.errors import GeoError
    from geo.importer import import_city

    settings = _settings(args)
    city_dir = settings.cities_dir / args.slug
    yaml_path = city_dir / "city.yaml"
    old = None
    if yaml_path.exists():
        if not args.update:
            raise ConfigError(
                f"{yaml_path} exists; pass --update to replace its crs, layers and sources (its "
                "services and routing are kept)"
            )
        old = yaml.safe_load(yaml_path.read_text())
    m = mapping_from_args(args)
    if old and not m.get("crs"):
        m["crs"] = old.get("crs")
    try:
        result = import_city(m, settings.data_dir, None if args.no_cache else settings.cache_dir)
    except GeoError as exc:
        print(f"streetlens: import of {args.slug} failed: {exc}", file=sys.stderr)
        return 2
    spec = pack_spec(old, result.spec, m)
    result.manifest["sources"] = spec.get("sources", [])
    _write_yaml(yaml_path, CITY_HEADER.format(name=spec["name"]), spec)
    _write_yaml(city_dir / "manifest.yaml", MANIFEST_HEADER, result.manifest)
    load_city_pack(city_dir)  # the pipeline must read what was written
    print(result.report.summary())
    print(f"wrote {yaml_path} and {city_dir / 'manifest.yaml'}")
    return 0


def cmd_city_check(args: argparse.Namespace) -> int:
    """Re-validate a city pack against its files and manifest."""
    from geo.errors import GeoError
    from geo.layers import load_city
    from geo.manifest import build_manifest, check_pack

    settings = _settings(args)
    pack = load_city_pack(settings.cities_dir / args.slug)
    manifest_path = pack.path.parent / "manifest.yaml"
    if args.write_manifest:
        try:
            report = load_city(pack.spec, settings.data_dir, None).report
        except GeoError as exc:
            print(f"streetlens: {args.slug}: {exc}", file=sys.stderr)
            return 1
        _write_yaml(
            manifest_path, MANIFEST_HEADER, build_manifest(pack.spec, settings.data_dir, report)
        )
        print(report.summary())
        print(f"wrote {manifest_path}")
        return 0
    manifest = yaml.safe_load(manifest_path.read_text()) if manifest_path.exists() else None
    check = check_pack(pack.spec, manifest, settings.data_dir)
    if check.report is not None:
        print(check.report.summary())
    for w in check.warnings:
        print(f"warning: {w}")
    for p in check.problems:
        print(f"problem: {p}", file=sys.stderr)
    print(f"{args.slug}: {'ok' if check.ok else f'{len(check.problems)} problem(s)'}")
    return 0 if check.ok else 1


def cmd_city_postgis(args: argparse.Namespace) -> int:
    """Load a pack's parcels and streets into the PostGIS case store (GiST-indexed tables)."""
    from geo.errors import GeoError
    from geo.layers import load_city
    from geo.postgis import load_postgis

    settings = _settings(args)
    url = args.database_url or settings.database_url
    if not url.startswith(("postgresql", "postgres:")):
        raise ConfigError(
            f"{url} is not PostgreSQL; set STREETLENS_DATABASE_URL or --database-url to the "
            "PostGIS database"
        )
    pack = load_city_pack(settings.cities_dir / args.slug)
    try:
        counts = load_postgis(load_city(pack.spec, settings.data_dir, settings.cache_dir), url)
    except GeoError as exc:
        print(f"streetlens: {args.slug}: {exc}", file=sys.stderr)
        return 2
    print(f"{args.slug}: loaded {counts['lots']} lots, {counts['nonlots']} other parcels, "
          f"{counts['streets']} street segments into PostGIS")  # fmt: skip
    return 0


def add_city_commands(sub: argparse._SubParsersAction) -> None:
    """Attach `city import` and `city check` to the CLI."""
    c = sub.add_parser("city", help="city packs: import a city's GIS files, check a pack")
    csub = c.add_subparsers(dest="city_command", required=True)
    i = csub.add_parser(
        "import",
        help="build datasets/cities/SLUG from the city's files (any GDAL/OGR vector format)",
        description="Paths: absolute, or relative to the data directory or the current folder; "
        "PATH::LAYER picks a layer of a GeoPackage or File Geodatabase.",
    )
    i.add_argument("slug")
    i.add_argument(
        "--mapping",
        type=Path,
        help="YAML: name, crs, layers, sources (e.g. datasets/cities/coral-gables-fl/import.yaml)",
    )
    i.add_argument("--name")
    i.add_argument("--crs", help="the city's projected CRS in metres, e.g. EPSG:26958")
    i.add_argument("--timezone")
    i.add_argument("--jurisdiction-id")
    i.add_argument("--boundary")
    i.add_argument("--boundary-crs", help="when the file declares none")
    i.add_argument("--parcels")
    i.add_argument("--parcels-crs")
    i.add_argument("--parcel-id", help="parcel id field (Miami-Dade: FOLIO)")
    i.add_argument("--parcel-id-digits", type=int, help="zero-pad numeric ids to this width")
    i.add_argument("--parcel-address", help="site address field on the parcel layer")
    i.add_argument("--parcel-use", help="land-use field on the parcel layer")
    i.add_argument("--non-lot-ids", help="comma-separated ids that are not lots (ROAD,ROW)")
    i.add_argument("--addresses", help="a separate site-address table joined by key")
    i.add_argument("--address-key")
    i.add_argument("--address-field")
    i.add_argument("--address-use")
    i.add_argument("--streets")
    i.add_argument("--streets-crs")
    i.add_argument("--street-id")
    i.add_argument("--street-name")
    i.add_argument("--street-class", help="road class field")
    i.add_argument("--street-owner", help="field naming who maintains the road")
    i.add_argument("--owner-value", action="append", metavar="VALUE=OWNER")
    i.add_argument("--owner-default", help="owner of roads the field leaves empty")
    i.add_argument("--street-zip", metavar="LEFT,RIGHT")
    i.add_argument("--street-ranges", metavar="L_FROM,L_TO,R_FROM,R_TO")
    i.add_argument("--asset", action="append", metavar="KIND=PATH")
    i.add_argument("--asset-id", action="append", metavar="KIND=FIELD")
    i.add_argument("--source", action="append", metavar="NAME|URL|LICENCE")
    i.add_argument("--data-dir", type=Path)
    i.add_argument("--cities-dir", type=Path)
    i.add_argument("--update", action="store_true", help="replace the layers of an existing pack")
    i.add_argument("--no-cache", action="store_true", help="do not write the index cache")
    i.set_defaults(func=cmd_city_import)

    k = csub.add_parser("check", help="re-validate a pack: files, checksums, CRS, geometry, ids")
    k.add_argument("slug")
    k.add_argument("--write-manifest", action="store_true", help="(re)write manifest.yaml")
    k.add_argument("--data-dir", type=Path)
    k.add_argument("--cities-dir", type=Path)
    k.set_defaults(func=cmd_city_check)

    g = csub.add_parser("load-postgis", help="parcels and streets into PostGIS tables")
    g.add_argument("slug")
    g.add_argument("--database-url", help="default: STREETLENS_DATABASE_URL")
    g.add_argument("--data-dir", type=Path)
    g.add_argument("--cities-dir", type=Path)
    g.set_defaults(func=cmd_city_postgis)

"""`streetlens city import` / `check` on generated Miami-Dade-shaped exports in EPSG:2236 feet."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from gen_county import COUNTY_CRS, FT, county_data_dir, make_county, write_layer

from geo.errors import CRSMismatch, GeoError, LayerError
from geo.importer import import_city
from geo.layers import load_city
from pipeline.city import load_city_pack
from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "datasets" / "cities" / "coral-gables-fl"
SLUG = "coral-gables-fl"
BOUNDARY = "gis/coral-gables-fl/boundary.geojson"


@pytest.fixture
def county(tmp_path: Path, data_dir: Path):
    """A data directory with the real boundary and generated county parcels and streets."""
    root = county_data_dir(tmp_path / "data", data_dir)
    c, parcels, streets = make_county()
    write_layer(root / "gis/coral-gables-fl/county/parcels.gpkg", parcels)
    write_layer(root / "gis/coral-gables-fl/county/streets.gpkg", streets)
    cities = tmp_path / "cities"
    (cities / SLUG).mkdir(parents=True)
    shutil.copy(PACK / "city.yaml", cities / SLUG / "city.yaml")
    return c, parcels, streets, root, cities


def _import(root: Path, cities: Path, *extra: str) -> int:
    return main(
        ["city", "import", SLUG, "--data-dir", str(root), "--cities-dir", str(cities), *extra]
    )


def test_import_with_the_committed_mapping(county, capsys):
    c, _, _, root, cities = county
    rc = _import(root, cities, "--update", "--mapping", str(PACK / "import.yaml"), "--no-cache")
    out = capsys.readouterr().out
    assert rc == 0, out
    spec = yaml.safe_load((cities / SLUG / "city.yaml").read_text())
    # Services and routing are kept; the layers name their files relative to the data dir.
    assert spec["routing"] == yaml.safe_load((PACK / "city.yaml").read_text())["routing"]
    assert spec["layers"]["parcels"]["path"] == "gis/coral-gables-fl/county/parcels.gpkg"
    assert spec["layers"]["parcels"]["crs"] == COUNTY_CRS
    assert spec["layers"]["boundary"]["crs"] == "EPSG:4326"
    assert len(spec["sources"]) == 3 and all(s["licence"] for s in spec["sources"])
    man = yaml.safe_load((cities / SLUG / "manifest.yaml").read_text())
    p = man["layers"]["parcels"]
    (f,) = p["files"]
    data = (root / f["path"]).read_bytes()
    assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["bytes"] == len(data)
    assert (p["features"], p["loaded"], p["repaired"], p["dropped"]) == (9, 8, 1, {"missing id": 1})
    assert p["duplicate_ids"] == 1 and p["driver"] == "GPKG"
    assert "1 ids on more than one feature" in out and c.condo_folio in out
    assert not any(p.suffix in (".gpkg", ".geojson") for p in (cities / SLUG).iterdir())

    pack = load_city_pack(cities / SLUG)
    geo = load_city(pack.spec, root)
    for lot in c.lots:
        place = geo.place(*lot.center())
        assert place.in_jurisdiction
        assert (place.parcel_id, place.address) == (lot.folio, lot.address)
        assert place.parcel_use == lot.use
        assert len(place.parcel_id) == 13 and place.parcel_id.startswith("03")
    assert geo.parcel_at(*c.lots[0].center()) == c.condo_folio


def test_feet_become_metres(county):
    """Distances come out in metres: the county's feet are converted exactly."""
    c, _, _, root, _ = county
    spec = yaml.safe_load((PACK / "import.yaml").read_text())
    geo = import_city({**spec, "slug": SLUG}, root).city
    lot = c.lots[1]  # the south row, mid-block: Biltmore Way runs 30 ft south of it
    p = geo.place(*lot.south_of(10.0), uncertainty_m=0.0)
    assert p.parcel_id == lot.folio
    assert p.parcel_distance_m == pytest.approx(10 * FT, abs=0.011)  # 3.05 m, not 10
    assert p.street_name == "BILTMORE WAY"
    assert p.street_distance_m == pytest.approx(20 * FT, abs=0.011)
    assert (p.road_owner, p.zip_code) == ("city", "33134")
    assert p.interpolated_address is not None and p.interpolated_address.endswith("BILTMORE WAY")
    # The north-west lot is nearest Le Jeune Rd, a state road 60 ft west of the block.
    west = c.lots[3]  # north row, first column
    lat, lon = west.center()
    s = geo.nearest_street(lat, lon)
    assert (s.name, s.road_owner) == ("LE JEUNE RD", "state-fdot")
    assert s.distance_m == pytest.approx((60 + 50) * FT, abs=0.011)


def test_routing_follows_the_county_owner_field(county):
    c, _, _, root, cities = county
    assert _import(root, cities, "--update", "--mapping", str(PACK / "import.yaml")) == 0
    pack = load_city_pack(cities / SLUG)
    geo = load_city(pack.spec, root)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    depts = {}
    for lot in (c.lots[1], c.lots[3]):
        p = geo.place(*lot.center())
        r = pack.route(
            category="pothole", severity=None, road_owner=p.road_owner,
            in_jurisdiction=p.in_jurisdiction, now=now,
        )  # fmt: skip
        depts[p.street_name] = r.department
    assert depts["BILTMORE WAY"].startswith("Coral Gables Public Works")
    assert depts["LE JEUNE RD"].startswith("FDOT District 6")


@pytest.mark.filterwarnings("ignore:Normalized/laundered field name")
@pytest.mark.parametrize("driver", ["ESRI Shapefile", "OpenFileGDB", "GeoParquet", "FlatGeobuf"])
def test_other_formats_and_cli_options(tmp_path, data_dir, driver):
    root = county_data_dir(tmp_path / "data", data_dir)
    c, parcels, _ = make_county()
    name = {"ESRI Shapefile": "p.shp", "OpenFileGDB": "county.gdb", "GeoParquet": "p.parquet",
            "FlatGeobuf": "p.fgb"}[driver]  # fmt: skip
    layer = "parcels" if driver == "OpenFileGDB" else None
    # The Shapefile holds folios as numbers, as a spreadsheet round trip leaves them.
    path = write_layer(
        root / "county" / name, parcels, driver=driver, layer=layer,
        numeric_folio=driver == "ESRI Shapefile",
    )  # fmt: skip
    src = f"{path}::parcels" if layer else str(path)
    # A Shapefile's field names stop at 10 characters: TRUE_SITE_ADDR is TRUE_SITE_ there.
    addr = "TRUE_SITE_" if driver == "ESRI Shapefile" else "TRUE_SITE_ADDR"
    cities = tmp_path / "cities"
    rc = main([
        "city", "import", SLUG, "--name", "Coral Gables", "--crs", "EPSG:26958",
        "--boundary", "gis/coral-gables-fl/boundary.geojson", "--parcels", src,
        "--parcel-id", "FOLIO", "--parcel-id-digits", "13", "--parcel-address", addr,
        "--source", "Generated|https://example.invalid|CC0",
        "--data-dir", str(root), "--cities-dir", str(cities), "--no-cache",
    ])  # fmt: skip
    assert rc == 0
    pack = load_city_pack(cities / SLUG)  # a new pack gets the default services and routing
    assert pack.spec["layers"]["parcels"]["crs"] == COUNTY_CRS
    assert pack.route(
        category="pothole", severity=None, road_owner=None, in_jurisdiction=True,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    ).department == "Public Works — Streets"  # fmt: skip
    geo = load_city(pack.spec, root)
    for lot in c.lots:
        assert geo.place(*lot.center()).parcel_id == lot.folio
        assert geo.place(*lot.center()).address == lot.address


@pytest.mark.filterwarnings("ignore:Normalized/laundered field name")
def test_numeric_folios_lose_their_zero_without_id_digits(tmp_path, data_dir):
    root = county_data_dir(tmp_path / "data", data_dir)
    c, parcels, _ = make_county()
    write_layer(root / "p.shp", parcels, driver="ESRI Shapefile", numeric_folio=True)
    mapping = {
        "slug": SLUG, "crs": "EPSG:26958",
        "layers": {"boundary": {"path": "gis/coral-gables-fl/boundary.geojson"},
                   "parcels": {"path": "p.shp", "id_field": "FOLIO"}},
    }  # fmt: skip
    geo = import_city(mapping, root).city
    assert geo.parcel_at(*c.lots[0].center()) == c.lots[0].folio[1:]  # 12 digits: wrong
    mapping["layers"]["parcels"]["id_digits"] = 13
    assert import_city(mapping, root).city.parcel_at(*c.lots[0].center()) == c.lots[0].folio


def _mapping(parcels: dict) -> dict:
    return {
        "slug": SLUG,
        "crs": "EPSG:26958",
        "layers": {"boundary": {"path": BOUNDARY}, "parcels": parcels},
    }


@pytest.mark.filterwarnings("ignore:Normalized/laundered field name")
@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_errors_say_what_to_do(tmp_path, data_dir):
    root = county_data_dir(tmp_path / "data", data_dir)
    _, parcels, streets = make_county()
    write_layer(root / "p.gpkg", parcels)
    with pytest.raises(LayerError, match=r"no field 'PARCEL_ID'.*FOLIO") as err:
        import_city(_mapping({"path": "p.gpkg", "id_field": "PARCEL_ID"}), root)
    assert isinstance(err.value, GeoError) and isinstance(err.value, ValueError)
    with pytest.raises(LayerError, match="--parcel-id"):
        import_city(_mapping({"path": "p.gpkg"}), root)
    # No CRS in the file (a Shapefile without .prj): the import asks for one, then accepts it.
    write_layer(root / "noprj.shp", parcels, driver="ESRI Shapefile", crs=None)
    with pytest.raises(CRSMismatch, match="declares no CRS"):
        import_city(_mapping({"path": "noprj.shp", "id_field": "FOLIO"}), root)
    ok = _mapping({"path": "noprj.shp", "id_field": "FOLIO", "crs": COUNTY_CRS})
    assert import_city(ok, root).report.layers["parcels"].loaded == 8
    # Feet declared as metres (the classic State Plane mix-up): far outside Florida East's area.
    bad = _mapping({"path": "noprj.shp", "id_field": "FOLIO", "crs": "EPSG:26958"})
    with pytest.raises(CRSMismatch, match="in another CRS"):
        import_city(bad, root)
    with pytest.raises(CRSMismatch, match="EPSG:2236"):
        import_city(_mapping({"path": "p.gpkg", "id_field": "FOLIO", "crs": "EPSG:26958"}), root)
    # Two layers in one GeoPackage: say which.
    write_layer(root / "two.gpkg", parcels, layer="parcels")
    write_layer(root / "two.gpkg", streets, layer="streets")
    with pytest.raises(LayerError, match=r"several layers.*PATH::LAYER"):
        import_city(_mapping({"path": "two.gpkg", "id_field": "FOLIO"}), root)
    with pytest.raises(LayerError, match="must be polygons"):
        import_city(_mapping({"path": "two.gpkg", "layer": "streets", "id_field": "SEG_ID"}), root)
    outside = write_layer(tmp_path / "elsewhere.gpkg", parcels)
    with pytest.raises(LayerError, match="outside the data directory"):
        import_city(_mapping({"path": str(outside), "id_field": "FOLIO"}), root)
    good = _mapping({"path": "p.gpkg", "id_field": "FOLIO"})
    with pytest.raises(CRSMismatch, match="metres"):
        import_city({**good, "crs": COUNTY_CRS}, root)
    with pytest.raises(LayerError, match="slug"):
        import_city({**good, "slug": "Coral Gables"}, root)


def test_an_existing_pack_needs_update(county, capsys):
    _, _, _, root, cities = county
    before = (cities / SLUG / "city.yaml").read_text()
    assert _import(root, cities, "--mapping", str(PACK / "import.yaml")) == 2
    assert "--update" in capsys.readouterr().err
    assert (cities / SLUG / "city.yaml").read_text() == before


def test_check_finds_changed_and_missing_files(county, capsys):
    _, parcels, _, root, cities = county
    assert _import(root, cities, "--update", "--mapping", str(PACK / "import.yaml")) == 0
    check = ["city", "check", SLUG, "--data-dir", str(root), "--cities-dir", str(cities)]
    capsys.readouterr()
    assert main(check) == 0
    assert f"{SLUG}: ok" in capsys.readouterr().out
    # The city re-exports its parcels (one lot fewer): the checksum and counts no longer match.
    less = {k: v[:-2] for k, v in parcels.items()}
    gpkg = root / "gis/coral-gables-fl/county/parcels.gpkg"
    gpkg.unlink()
    write_layer(gpkg, less)
    assert main(check) == 1
    err = capsys.readouterr().err
    assert "changed since the manifest" in err and "7 features load now, 8 did" in err
    gpkg.unlink()
    assert main(check) == 1
    assert "parcels.gpkg is missing" in capsys.readouterr().err


def test_committed_packs_match_their_files(data_dir, capsys):
    for slug in ("cambridge-ma", SLUG):
        assert main(["city", "check", slug, "--data-dir", str(data_dir)]) == 0, slug
        assert f"{slug}: ok" in capsys.readouterr().out


def test_reimporting_cambridge_reproduces_its_pack(spec, data_dir, tmp_path):
    """The whole Cambridge set (address table, streets, assets) through the importer."""
    mapping = {k: spec[k] for k in ("slug", "crs", "layers", "sources")}
    result = import_city(mapping, data_dir)
    assert result.spec["layers"] == spec["layers"]
    committed = yaml.safe_load((REPO / "datasets/cities/cambridge-ma/manifest.yaml").read_text())
    assert result.manifest["layers"] == committed["layers"]
    assert result.report.layers["addresses"].loaded == 13021
    assert result.city.place(42.368705, -71.109513).street_name == "Massachusetts Ave"

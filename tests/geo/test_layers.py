"""Loading layers: the real defects are reported not fatal, CRS mismatches raise, cache works."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pyproj
import pytest
import shapely

from geo.errors import CRSMismatch, GeoError, LayerError, LayerNotFound
from geo.layers import load_city


def test_real_defects_are_repaired_or_dropped_with_reasons(city):
    r = city.report
    assert not r.from_cache
    parcels = r.layers["parcels"]
    assert parcels.features == 13116
    # 37 self-intersecting polygons made valid + 1 multipolygon with a one-point ring.
    assert parcels.repaired >= 38
    assert parcels.dropped["missing id"] == 1
    assert parcels.dropped["degenerate ring (no area)"] == 1
    assert parcels.loaded == parcels.features - parcels.dropped_total
    assert parcels.examples["dropped: missing id"] == ["feature 9735"]
    assert parcels.examples["repaired: degenerate ring removed"] == ["250-209"]
    assert parcels.examples["dropped: degenerate ring (no area)"] == ["238-80"]
    assert r.layers["streets"].loaded == 2643
    assert r.layers["assets.streetlight"].loaded == 6117
    assert r.layers["addresses"].features == 27528
    assert "parcels:" in r.summary()


def test_a_repaired_parcel_is_still_found(city, data_dir):
    # 250-209's second part is a one-point ring that GEOS refuses; its real part must survive.
    fc = json.loads((data_dir / "gis/cambridge-ma/parcels.geojson").read_text())
    (f,) = [f for f in fc["features"] if f["properties"].get("ML") == "250-209"]
    p = shapely.Polygon(f["geometry"]["coordinates"][0][0]).representative_point()
    assert city.parcel_at(p.y, p.x) == "250-209"
    assert city.place(p.y, p.x).address == "253 BRATTLE ST"


def test_warm_load_comes_from_cache_and_is_faster(city, spec, data_dir, geo_cache):
    warm = load_city(spec, data_dir, geo_cache)
    assert warm.report.from_cache
    assert warm.report.seconds < city.report.seconds
    assert warm.report.layers["parcels"].repaired == city.report.layers["parcels"].repaired
    lat, lon = 42.368705, -71.109513
    assert warm.place(lat, lon) == city.place(lat, lon)


def test_a_damaged_cache_is_rebuilt(spec, data_dir, tmp_path):
    small = _small_spec(spec, data_dir)
    load_city(small, data_dir, tmp_path)
    (cached,) = tmp_path.glob("geo-*.npz")
    cached.write_bytes(b"not a cache")
    again = load_city(small, data_dir, tmp_path)
    assert not again.report.from_cache
    assert any("unreadable" in n for n in again.report.notes)
    assert load_city(small, data_dir, tmp_path).report.from_cache


def _small_spec(spec: dict, data_dir: Path, **boundary) -> dict:
    """Boundary and streetlights only: enough to exercise loading, quick to read."""
    layers = {
        "boundary": {**spec["layers"]["boundary"], **boundary},
        "assets": {"streetlight": spec["layers"]["assets"]["streetlight"]},
    }
    return {"slug": "cambridge-test", "crs": spec["crs"], "layers": layers}


def _boundary_fc(data_dir: Path, crs: str | None) -> dict:
    fc = json.loads((data_dir / "gis/cambridge-ma/boundary.geojson").read_text())
    if crs is not None:
        tr = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        for f in fc["features"]:
            g = shapely.geometry.shape(f["geometry"])
            g = shapely.transform(g, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
            f["geometry"] = shapely.geometry.mapping(g)
    return fc


def test_file_declaring_another_crs_raises(spec, data_dir, tmp_path):
    fc = _boundary_fc(data_dir, "EPSG:26986")
    fc["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::26986"}}
    path = tmp_path / "boundary_26986.geojson"
    path.write_text(json.dumps(fc))
    with pytest.raises(CRSMismatch, match="EPSG:26986"):
        load_city(_small_spec(spec, data_dir, path=str(path)), data_dir)
    # Declared correctly, the same file loads and is reprojected like the original.
    ok = load_city(_small_spec(spec, data_dir, path=str(path), crs="EPSG:26986"), data_dir)
    assert ok.contains(42.3736, -71.1190)
    assert not ok.contains(42.3551, -71.0656)


def test_undeclared_metres_claiming_wgs84_raise(spec, data_dir, tmp_path):
    # GeoJSON without a crs member is WGS84 by definition, but these numbers are metres.
    path = tmp_path / "boundary_metres.geojson"
    path.write_text(json.dumps(_boundary_fc(data_dir, "EPSG:26986")))
    with pytest.raises(CRSMismatch, match="another CRS"):
        load_city(_small_spec(spec, data_dir, path=str(path)), data_dir)


def test_a_layer_far_from_the_city_raises(spec, data_dir, tmp_path):
    # Valid WGS84 coordinates, but in the wrong place: lon/lat swapped is the classic.
    fc = _boundary_fc(data_dir, None)
    for f in fc["features"]:
        g = shapely.geometry.shape(f["geometry"])
        f["geometry"] = shapely.geometry.mapping(
            shapely.transform(g, lambda xy: xy + np.array([1.5, 0.0]))
        )
    path = tmp_path / "boundary_moved.geojson"
    path.write_text(json.dumps(fc))
    bad = _small_spec(spec, data_dir, path=str(path))
    with pytest.raises(CRSMismatch, match="far from the city boundary"):
        load_city(bad, data_dir)


def test_city_crs_must_be_projected_metres(spec, data_dir):
    bad = {**_small_spec(spec, data_dir), "crs": "EPSG:4326"}
    with pytest.raises(CRSMismatch, match="projected"):
        load_city(bad, data_dir)


def test_any_ogr_format_loads(spec, data_dir, tmp_path):
    # The boundary as a Shapefile and the streetlights as a GeoPackage, both in metres.
    fc = _boundary_fc(data_dir, "EPSG:26986")
    geoms = np.array([shapely.geometry.shape(f["geometry"]) for f in fc["features"]])
    shp = tmp_path / "boundary.shp"
    pyogrio.raw.write(
        shp,
        shapely.to_wkb(geoms),
        [np.array(["b"] * len(geoms), dtype=object)],
        ["GlobalID"],
        geometry_type="Polygon",
        crs="EPSG:26986",
        driver="ESRI Shapefile",
    )
    src = data_dir / spec["layers"]["assets"]["streetlight"]["path"]
    meta, _, wkb, cols = pyogrio.raw.read(src, columns=["PoleID", "Neighborhood"])
    gpkg = tmp_path / "assets.gpkg"
    pyogrio.raw.write(
        gpkg,
        wkb,
        cols,
        list(meta["fields"]),
        geometry_type="Point",
        crs="EPSG:4326",
        driver="GPKG",
        layer="lights",
    )
    small = _small_spec(spec, data_dir, path=str(shp), crs="EPSG:26986")
    small["layers"]["assets"]["streetlight"] = {
        **spec["layers"]["assets"]["streetlight"],
        "path": str(gpkg),
        "layer": "lights",
    }
    g = load_city(small, data_dir)
    assert g.contains(42.3736, -71.1190)
    p = g.place(42.3736, -71.1190, asset_kind="streetlight")
    assert p.asset_id is not None and p.asset_distance_m < 50


def test_missing_file_and_field_say_what_to_fix(spec, data_dir, tmp_path):
    with pytest.raises(LayerNotFound, match="does not exist"):
        load_city(_small_spec(spec, data_dir, path="gis/nowhere.geojson"), data_dir)
    small = _small_spec(spec, data_dir)
    small["layers"]["assets"]["streetlight"] = {
        **spec["layers"]["assets"]["streetlight"],
        "id_field": "NoSuchField",
    }
    with pytest.raises(LayerError, match="NoSuchField") as err:
        load_city(small, data_dir)
    assert isinstance(err.value, GeoError) and isinstance(err.value, ValueError)
    with pytest.raises(LayerError, match="slug"):
        load_city({"crs": "EPSG:26986", "layers": {}}, data_dir)


def test_the_cache_goes_to_cache_dir_only(city, data_dir, geo_cache):
    assert len(list(geo_cache.glob("geo-cambridge-ma-*.npz"))) == 1
    names = {p.name for p in (data_dir / "gis/cambridge-ma").iterdir()}
    assert not any(n.endswith((".npz", ".tmp")) for n in names)


def test_a_boundary_only_city_loads(data_dir):
    # Coral Gables ships its boundary alone (parcels come from the county): lookups degrade to
    # jurisdiction only, they do not fail.
    spec = {
        "slug": "coral-gables-fl",
        "crs": "EPSG:26958",  # NAD83 / Florida East (metres)
        "layers": {"boundary": {"path": "gis/coral-gables-fl/boundary.geojson"}},
    }
    g = load_city(spec, data_dir)
    p = g.place(25.6915, -80.2346)
    assert p.in_jurisdiction and p.parcel_id is None and p.street_name is None
    assert not g.contains(42.3736, -71.1190)
    assert g.place_many(np.array([]), np.array([])) == []

"""PostGIS answers the same parcel and street lookups as the in-memory index (real Cambridge)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from sqlalchemy import create_engine, text

from geo.errors import CRSMismatch, GeoError, LayerError
from geo.postgis import PostgisPlaces, load_postgis, table_names

N = 400


@pytest.fixture(scope="module")
def pg_url(pg_database) -> str:
    return pg_database()


@pytest.fixture(scope="module")
def loaded(city, pg_url) -> dict[str, int]:
    return load_postgis(city, pg_url)


@pytest.fixture(scope="module")
def points(city) -> tuple[np.ndarray, np.ndarray]:
    """N random points in Cambridge, and a few just outside (seeded)."""
    rng = np.random.default_rng(20)
    xmin, ymin, xmax, ymax = shapely.bounds(city.boundary)
    x, y = rng.uniform(xmin, xmax, 3 * N), rng.uniform(ymin, ymax, 3 * N)
    inside = shapely.intersects_xy(city.boundary, x, y)
    x = np.r_[x[inside][: N - 20], x[~inside][:20]]
    y = np.r_[y[inside][: N - 20], y[~inside][:20]]
    lon, lat = city._proj.to_wgs84(x, y)
    return np.asarray(lat), np.asarray(lon)


def test_the_load_is_indexed_and_complete(city, loaded, pg_url):
    tables = city.layer_tables()
    assert loaded == {
        "lots": len(tables["lots"]["id"]),
        "nonlots": len(tables["nonlots"]["id"]),
        "streets": len(tables["streets"]["id"]),
    }
    assert loaded["lots"] > 13000 and loaded["streets"] == 2643
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as c:
        for table in table_names("cambridge-ma").values():
            idx = c.execute(
                text("SELECT indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table}
            ).scalars()
            assert any("USING gist (geom)" in d for d in idx), table
            srid = c.execute(text(f"SELECT DISTINCT ST_SRID(geom) FROM {table}")).scalars().all()
            assert srid == [26986]
    engine.dispose()


def test_parcel_ids_match_the_in_memory_index(city, loaded, pg_url, points):
    pg = PostgisPlaces(pg_url, "cambridge-ma", crs="EPSG:26986")
    lat, lon = points
    for reach in (0.0, 30.0):
        mem = city.parcel_ids(lat, lon, max_distance_m=reach)
        db = pg.parcel_ids(lat, lon, max_distance_m=reach)
        assert list(db) == list(mem)
    found = sum(v is not None for v in mem)
    assert found > 0.5 * N  # a test of lots, not of Nones
    i = next(k for k, v in enumerate(mem) if v is not None)
    assert pg.parcel_at(lat[i], lon[i]) == mem[i]


def test_nearest_streets_match_the_in_memory_index(city, loaded, pg_url, points):
    pg = PostgisPlaces(pg_url, "cambridge-ma")
    lat, lon = points
    db = pg.nearest_streets(lat, lon)
    hits = 0
    for i in range(len(lat)):
        mem = city.nearest_street(lat[i], lon[i])
        assert (db[i] is None) == (mem is None), i
        if mem is None:
            continue
        hits += 1
        assert db[i].street_id == mem.street_id
        assert db[i].distance_m == pytest.approx(mem.distance_m, abs=0.011)
        assert (db[i].name, db[i].side, db[i].zip_code, db[i].road_owner, db[i].road_class) == (
            mem.name, mem.side, mem.zip_code, mem.road_owner, mem.road_class,
        )  # fmt: skip
        assert db[i].interpolated_address == mem.interpolated_address
    assert hits > 0.8 * N
    assert pg.nearest_street(lat[0], lon[0], max_distance_m=0.0) is None


def test_postgis_projection_agrees_with_pyproj(city, loaded, pg_url, points):
    # Lookups project with pyproj; SQL that joins cases.geom (WGS84) uses ST_Transform. Both must
    # put a point within millimetres of the other, or joins in SQL would disagree at lot edges.
    lat, lon = points
    x, y = city._proj.to_local(lon[:50], lat[:50])
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(lo, la),"
                " 4326), 26986) AS p, i FROM unnest(CAST(:lo AS float8[]), CAST(:la AS float8[]))"
                " WITH ORDINALITY AS u(lo, la, i)) s ORDER BY i"
            ),
            {"lo": list(lon[:50]), "la": list(lat[:50])},
        ).all()
    engine.dispose()
    gap = np.hypot(np.array([r[0] for r in rows]) - x, np.array([r[1] for r in rows]) - y)
    assert gap.max() < 0.005


def test_mismatches_and_missing_cities_raise(loaded, pg_url):
    with pytest.raises(CRSMismatch, match="EPSG:26986"):
        PostgisPlaces(pg_url, "cambridge-ma", crs="EPSG:2249")
    with pytest.raises(LayerError, match="not loaded") as err:
        PostgisPlaces(pg_url, "coral-gables-fl")
    assert isinstance(err.value, GeoError)


def test_a_boundary_only_city_loads_empty_tables(data_dir, pg_database):
    from geo.layers import load_city

    spec = {"slug": "coral-gables-fl", "crs": "EPSG:26958",
            "layers": {"boundary": {"path": "gis/coral-gables-fl/boundary.geojson"}}}  # fmt: skip
    url = pg_database()
    assert load_postgis(load_city(spec, data_dir), url) == {"lots": 0, "nonlots": 0, "streets": 0}
    pg = PostgisPlaces(url, "coral-gables-fl")
    assert pg.parcel_at(25.6915, -80.2346) is None
    # The same through the CLI, from the committed pack.
    from pipeline.cli import main

    assert main(["city", "load-postgis", "coral-gables-fl", "--database-url", url]) == 0
    assert main(["city", "load-postgis", "coral-gables-fl", "--database-url", "sqlite://"]) == 2
    assert pg.nearest_street(25.6915, -80.2346) is None

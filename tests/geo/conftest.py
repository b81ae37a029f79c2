"""Fixtures: the real Cambridge layers in ../shared/data (read in place), PostGIS databases."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from helpers import require
from sqlalchemy import create_engine, make_url, text

from geo.layers import CityGeo, load_city

REPO = Path(__file__).resolve().parents[2]

DATA_DIR = Path(os.environ.get("STREETLENS_DATA_DIR", REPO.parent / "shared" / "data"))
CITY_YAML = REPO / "datasets" / "cities" / "cambridge-ma" / "city.yaml"
CAMBRIDGE = DATA_DIR / "gis" / "cambridge-ma"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (CAMBRIDGE / "parcels.geojson").exists():
        pytest.skip(f"the Cambridge GIS layers are not in {CAMBRIDGE}; set STREETLENS_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def spec() -> dict:
    return yaml.safe_load(CITY_YAML.read_text())


@pytest.fixture(scope="session")
def geo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("geo-cache")


@pytest.fixture(scope="session")
def city(spec: dict, data_dir: Path, geo_cache: Path) -> CityGeo:
    """Cambridge, loaded cold from the source files (this also writes the cache)."""
    return load_city(spec, data_dir, geo_cache)


PG_ADMIN_URL = os.environ.get(
    "STREETLENS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[], str]]:
    """Makes fresh PostGIS databases (copies of one template); drops them all at the end.

    The pattern of tests/pipeline/conftest.py: in CI a missing PostGIS fails, here it skips."""
    admin = create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as c:
            has_postgis = c.execute(
                text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
            ).first()
    except Exception as exc:
        admin.dispose()
        require(False, f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({exc}); scripts/test.sh")
    if not has_postgis:
        admin.dispose()
        require(False, "PostGIS is not installed: apt-get install postgresql-15-postgis-3")
    prefix = f"streetlens_geo_{secrets.token_hex(4)}"
    made = [f"{prefix}_template"]
    base = make_url(PG_ADMIN_URL)
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{made[0]}"')
    tmpl = create_engine(base.set(database=made[0]), isolation_level="AUTOCOMMIT")
    with tmpl.connect() as c:
        c.exec_driver_sql("CREATE EXTENSION postgis")
    tmpl.dispose()  # a template must have no connections when it is copied

    def new() -> str:
        name = f"{prefix}_{len(made)}"
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{made[0]}"')
        made.append(name)
        url = base.set(drivername="postgresql", database=name)  # geo must pick psycopg itself
        return url.render_as_string(hide_password=False)

    yield new
    with admin.connect() as c:
        for name in reversed(made):
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()

"""Shared fixtures: the real data directory, the served model, a fresh Settings per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import require
from sqlalchemy import create_engine, make_url, text

from pipeline.registry import served_detector
from pipeline.settings import Settings

# Processing makes a blurred public copy of every photo; MTCNN costs seconds a photo on these
# 2 cores, so the suite (and the servers it starts, which inherit this) uses the Haar cascades.
# tests/vision/test_privacy.py exercises MTCNN itself.
os.environ.setdefault("STREETLENS_PRIVACY_MTCNN", "false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory (../shared/data or STREETLENS_DATA_DIR)."""
    d = Settings().data_dir
    require(d.is_dir(), f"real data directory {d} is missing (set STREETLENS_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def served_model() -> Path:
    """The served detector's folder: weights.pt, model.onnx, meta.yaml."""
    m = served_detector(Settings().models_dir)
    assert m.onnx.exists() and m.weights.exists(), f"served model files missing in {m.path}"
    return m.path


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One derived-data cache (city layer index) for the whole session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def settings(tmp_path: Path, data_dir: Path, shared_cache: Path) -> Settings:
    """Settings on the embedded backends in a fresh home folder."""
    return Settings(home=tmp_path / "home", data_dir=data_dir, cache_dir=shared_cache)


PG_ADMIN_URL = os.environ.get(
    "STREETLENS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[], str]]:
    """Makes fresh PostGIS databases (copies of one template); drops them all at the end."""
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
        require(
            False,
            f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({exc}); scripts/test.sh",
        )
    if not has_postgis:
        admin.dispose()
        require(False, "PostGIS is not installed: apt-get install postgresql-15-postgis-3")
    prefix = f"streetlens_test_{secrets.token_hex(4)}"
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
        # Plain postgresql:// on purpose: the store must pick psycopg 3 itself.
        url = base.set(drivername="postgresql", database=name)
        return url.render_as_string(hide_password=False)

    yield new
    with admin.connect() as c:
        for name in reversed(made):
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()

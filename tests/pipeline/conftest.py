"""Store fixtures shared by the pipeline tests: fresh databases on SQLite and on PostGIS."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import require
from sqlalchemy import create_engine, make_url, text

from pipeline.store import SqlCaseStore

PG_ADMIN_URL = os.environ.get(
    "STREETLENS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_database(pytestconfig: pytest.Config) -> Iterator[Callable[[], str]]:
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


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    return request.getfixturevalue("pg_database")()


@pytest.fixture
def store(db_url: str) -> Iterator[SqlCaseStore]:
    """A migrated store on each backend."""
    s = SqlCaseStore(db_url)
    yield s
    s.close()

"""Store fixtures shared by the pipeline tests: fresh databases on SQLite and on PostGIS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.store import SqlCaseStore


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

"""Fixtures the Open311 suites share: the published schemas and an app client."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from open311_schemas import Schemas, schemas_dir

from api.app import create_app
from pipeline.settings import Settings


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    """The GeoReport v2 schemas, read in place from the data directory's sibling."""
    return Schemas(schemas_dir())


@pytest.fixture
def client(settings: Settings):
    """A TestClient on a fresh app; `client.ctx` is its Context."""
    # Rate limits are tested in test_auth_ratelimit.py; a conversation here must not meet them.
    quiet = {"sweep_interval_s": 0, "ratelimit_enabled": False}
    app = create_app(settings.model_copy(update=quiet))
    with TestClient(app) as c:
        c.ctx = app.state.ctx  # type: ignore[attr-defined]
        yield c

"""schemathesis against the app's own OpenAPI: every operation, fed generated (valid and
invalid) input, answers no 5xx, and what it answers matches the documented schema. Bounded:
a few examples per operation, so the whole run stays well under a minute."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from api.app import create_app
from pipeline import accounts
from pipeline.settings import Settings

# STREETLENS_FUZZ_DEEP=1: the coverage phase too and 50 examples (many minutes; not in CI).
DEEP = os.environ.get("STREETLENS_FUZZ_DEEP") == "1"
MAX_EXAMPLES = 50 if DEEP else 5
# Server-sent event streams only end when the client goes: a fuzzed request would hang on one.
STREAMS = r"/events$"
# The examples and fuzzing phases; the coverage phase (every boundary value of every
# parameter: hundreds of requests per operation) would take minutes on a 2-core machine.
CONFIG = {"phases": {"coverage": {"enabled": DEEP}, "stateful": {"enabled": False}}}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[tuple]:
    """The app on a fresh home, with an admin bearer token (so role-gated routes run too)."""
    from fastapi.testclient import TestClient

    home = tmp_path_factory.mktemp("schemathesis")
    app = create_app(
        Settings(
            home=home / "home", data_dir=data_dir, cache_dir=home / "cache",
            ratelimit_enabled=False, password_scrypt_log2_n=4, notify_interval_s=0,
        )
    )  # fmt: skip
    with TestClient(app):  # runs the lifespan once
        store = app.state.ctx.store
        admin = accounts.create_account(
            store, "fuzz-admin@example.org", "pw-fuzz-12345", "admin", log2_n=10
        )
        token, _ = accounts.issue_token(store, admin, 3600)
        yield app, token


@pytest.fixture(scope="module")
def app_schema(api: tuple) -> schemathesis.BaseSchema:
    app, _ = api
    config = schemathesis.config.SchemathesisConfig.from_dict(CONFIG)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


schema = schemathesis.pytest.from_fixture("app_schema").exclude(path_regex=STREAMS)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here reproduces
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_server_errors_and_responses_match_the_schema(case, api: tuple) -> None:
    _, token = api
    # Anonymous and as an admin: the first finds the 401/403 paths, the second the rest.
    case.call_and_validate(checks=CHECKS)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

"""Role x endpoint matrix: every route declares who may call it, and nobody else gets in.

The routes are read from the app itself (FastAPI's included routers flattened), so a route that
another module adds later is checked too: one without a declared role fails here. Each route is
called over real HTTP (a uvicorn server in a thread; streams are closed after their headers) with
every kind of caller, and must answer 401 or 403 exactly where its declaration says, and let the
caller through (no 401/403, no unhandled 5xx) everywhere else.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from helpers import free_port
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from api.app import create_app
from api.auth import ROLES, Requirement, endpoints
from pipeline import accounts
from pipeline.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ANYONE = tuple(ROLES)
ACCOUNTS = ("resident", "crew", "analyst", "admin")
# What a city expects of the routes this module knows (docs/api.md says why). Routes not listed
# here are checked against their own declaration.
EXPECTED: dict[tuple[str, str], Requirement] = {
    ("POST", "/api/v1/reports"): Requirement(ANYONE),
    ("GET", "/api/v1/reports/{case_id}"): Requirement(ANYONE),
    ("GET", "/api/v1/services"): Requirement(ANYONE),
    ("POST", "/api/v1/measure"): Requirement(ANYONE),
    ("GET", "/healthz"): Requirement(ANYONE),
    ("GET", "/readyz"): Requirement(ANYONE),
    ("GET", "/metrics"): Requirement(("analyst", "admin"), ("metrics",)),
    ("POST", "/api/v1/auth/token"): Requirement(ANYONE),
    ("DELETE", "/api/v1/auth/token"): Requirement(ACCOUNTS, accounts_only=True),
    ("POST", "/api/v1/accounts"): Requirement(ANYONE),
    ("GET", "/api/v1/me"): Requirement(ACCOUNTS, accounts_only=True),
    ("GET", "/api/v1/me/reports"): Requirement(ACCOUNTS, accounts_only=True),
    ("GET", "/api/v1/cases"): Requirement(("crew", "admin")),
    ("GET", "/api/v1/cases/{case_id}"): Requirement(("crew", "admin")),
    ("POST", "/api/v1/cases/{case_id}/actions"): Requirement(("crew", "admin")),
    ("PUT", "/api/v1/cases/{case_id}/photos/{n}/labels"): Requirement(("crew", "analyst", "admin")),
    ("GET", "/api/v1/cases/{case_id}/photos/{n}/labels"): Requirement(("crew", "analyst", "admin")),
}
# Routes whose handler checks a credential the dependency cannot see (a key in a form body):
# the expected answer per caller, written out. Open311 answers 403 for a missing key (its spec).
HANDLER_CHECKED: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/open311/v2/requests.{fmt}"): {"none": "forbidden"},
}
FASTAPI_DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
NO_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Caller:
    """One column of the matrix."""

    name: str
    kind: str  # anonymous | account | api_key | bad
    role: str
    scopes: frozenset[str] = frozenset()


CALLERS = [
    Caller("none", "anonymous", "anonymous"),
    *(Caller(r, "account", r) for r in ACCOUNTS),
    Caller("api_key", "api_key", "resident"),
    Caller("scrape_key", "api_key", "resident", frozenset({"metrics"})),
    Caller("crew_key", "api_key", "crew"),
    Caller("revoked_key", "bad", "-"),
    Caller("expired_token", "bad", "-"),
]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, shared_cache: Path
) -> Iterator[tuple[str, FastAPI]]:
    settings = Settings(
        home=tmp_path_factory.mktemp("matrix") / "home",
        data_dir=data_dir,
        cache_dir=shared_cache,
        ratelimit_enabled=False,
        sweep_interval_s=0,
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(15)


class Credentials:
    """Makes each caller's headers; account tokens are fresh per request (a sign-out call
    revokes the token it was made with)."""

    def __init__(self, app: FastAPI) -> None:
        self.store = app.state.ctx.store
        self.accounts = {
            r: accounts.create_account(
                self.store, f"{r}@matrix.test", "pw-" + "x" * 12, r, log2_n=4
            )
            for r in ACCOUNTS
        }
        self.keys = {
            "api_key": accounts.create_api_key(self.store, "matrix app")[0],
            "scrape_key": accounts.create_api_key(self.store, "prometheus", scopes=("metrics",))[0],
            "crew_key": accounts.create_api_key(self.store, "city CRM", role="crew")[0],
        }
        revoked, _ = accounts.create_api_key(self.store, "gone")
        accounts.revoke_api_keys(self.store, "gone")
        self.revoked = revoked
        self.expired, _ = accounts.issue_token(self.store, self.accounts["crew"], ttl_s=-1)

    def headers(self, c: Caller) -> dict[str, str]:
        if c.name == "none":
            return {}
        if c.name in self.keys:
            return {"X-API-Key": self.keys[c.name]}
        if c.name == "revoked_key":
            return {"X-API-Key": self.revoked}
        if c.name == "expired_token":
            return {"Authorization": f"Bearer {self.expired}"}
        token, _ = accounts.issue_token(self.store, self.accounts[c.role], 600)
        return {"Authorization": f"Bearer {token}"}


def _expect(req: Requirement, c: Caller, path: str, method: str) -> str:
    """ok | unauthorized | forbidden, derived from the declaration alone."""
    special = HANDLER_CHECKED.get((method, path), {})
    if c.name in special:
        return special[c.name]
    if c.kind == "bad":
        return "unauthorized"
    admitted = (c.role in req.roles or bool(c.scopes & set(req.scopes))) and not (
        req.accounts_only and c.kind == "api_key"
    )
    if admitted:
        return "ok"
    return "unauthorized" if c.kind == "anonymous" else "forbidden"


def _url(path: str) -> str:
    path = path.replace("{fmt}", "json")
    return re.sub(r"\{[^}]+\}", NO_ID, path)


def _outcome(status: int, path: str) -> str:
    if status == 401:
        return "unauthorized"
    if status == 403:
        # Open311 answers a refused key with the spec's 403, whichever the reason.
        return "unauthorized|forbidden" if path.startswith("/open311") else "forbidden"
    return "ok"


def test_every_route_declares_who_may_call_it(served: tuple[str, FastAPI]) -> None:
    _, app = served
    undeclared, wrong = [], []
    for ep in endpoints(app):
        if not ep.api:
            is_static = isinstance(ep.route, Mount) and isinstance(ep.route.app, StaticFiles)
            if ep.path not in FASTAPI_DOCS and not is_static:
                undeclared.append(f"{ep.path} (a {type(ep.route).__name__}, not an API route)")
            continue
        if ep.requirement is None:
            undeclared.append(f"{sorted(ep.methods)} {ep.path}")
            continue
        for m in ep.methods:
            want = EXPECTED.get((m, ep.path))
            got = ep.requirement
            if want and (set(want.roles), set(want.scopes), want.accounts_only) != (
                set(got.roles),
                set(got.scopes),
                got.accounts_only,
            ):
                wrong.append(f"{m} {ep.path}: declared {got}, expected {want}")
    assert not undeclared, "declare require(...) or public() on: " + "; ".join(undeclared)
    assert not wrong, "\n".join(wrong)
    paths = {(m, ep.path) for ep in endpoints(app) for m in ep.methods}
    assert set(EXPECTED) <= paths, f"routes gone: {set(EXPECTED) - paths}"


def test_nobody_reaches_what_their_role_does_not_allow(served: tuple[str, FastAPI]) -> None:
    base, app = served
    creds = Credentials(app)
    calls = [
        (m, ep.path, ep.requirement)
        for ep in endpoints(app)
        if ep.api and ep.requirement is not None
        for m in sorted(ep.methods - {"HEAD"})
    ]
    assert len(calls) >= len(EXPECTED)
    mismatches, server_errors, n = [], [], 0
    with httpx.Client(base_url=base, timeout=30) as http:
        for method, path, req in calls:
            for c in CALLERS:
                want = _expect(req, c, path, method)
                with http.stream(method, _url(path), headers=creds.headers(c)) as r:
                    status = r.status_code  # streams (SSE) are closed after their headers
                n += 1
                got = _outcome(status, path)
                if want not in got.split("|"):
                    mismatches.append(f"{method} {path} as {c.name}: {status}, expected {want}")
                if status >= 500 and status != 503:
                    server_errors.append(f"{method} {path} as {c.name}: {status}")
    assert n == len(calls) * len(CALLERS)
    assert not mismatches, f"{len(mismatches)} of {n} calls:\n" + "\n".join(mismatches)
    assert not server_errors, "\n".join(server_errors)


def _documented() -> dict[tuple[str, str], str]:
    rows = {}
    for line in DOCS.read_text().splitlines():
        m = re.match(
            r"^\|\s*(GET|POST|PUT|PATCH|DELETE|\*)\s*\|\s*`([^`]+)`\s*\|\s*([^|]+)\|", line
        )
        if m:
            rows[(m.group(1), m.group(2))] = m.group(3).strip()
    return rows


def _cell(req: Requirement) -> str:
    if req.is_public:
        return "anyone"
    who = [r for r in req.roles] + [f"key:{s}" for s in req.scopes]
    return ", ".join(who) + (" (accounts only)" if req.accounts_only else "")


def test_docs_table_lists_every_route_with_its_roles(served: tuple[str, FastAPI]) -> None:
    _, app = served
    documented = _documented()
    missing, differ = [], []
    for ep in endpoints(app):
        if not ep.api or ep.requirement is None:
            continue
        methods = {"*"} if len(ep.methods) > 4 else ep.methods - {"HEAD"}
        for m in sorted(methods):
            cell = documented.get((m, ep.path))
            if cell is None:
                missing.append(f"| {m} | `{ep.path}` | {_cell(ep.requirement)} |")
            elif cell != _cell(ep.requirement):
                differ.append(f"{m} {ep.path}: docs say {cell!r}, code {_cell(ep.requirement)!r}")
    assert not missing, "add these rows to docs/api.md:\n" + "\n".join(missing)
    assert not differ, "\n".join(differ)

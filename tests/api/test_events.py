"""Server-sent events read over real HTTP from a uvicorn server, on SQLite and PostGIS: a case's
history then its live changes, heartbeats, resuming with Last-Event-ID, staff-only firehose."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from pipeline import accounts
from pipeline.media import sha256_hex
from pipeline.settings import Settings
from pipeline.store import SqlCaseStore
from pipeline.types import Report


@contextlib.contextmanager
def _serve(settings: Settings) -> Iterator[tuple[str, Any, Any]]:
    """The app under uvicorn on a free port: (base URL, its store, its settings)."""
    settings.sweep_interval_s = 0
    settings.ratelimit_enabled = False
    settings.sse_poll_s, settings.sse_heartbeat_s = 0.05, 0.3
    app = create_app(settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app.state.ctx.store, settings
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[str, Any, Any]]:
    """The app served on each backend."""
    if request.param == "postgresql":
        settings.database_url = request.getfixturevalue("pg_database")()
    with _serve(settings) as served:
        yield served


@pytest.fixture
def sqlite_server(settings: Settings) -> Iterator[tuple[str, Any, Any]]:
    """The app served on SQLite (for what does not depend on the backend)."""
    with _serve(settings) as served:
        yield served


def _case(store: SqlCaseStore, tag: str) -> str:
    report = Report(photo_sha256=sha256_hex(tag.encode()), photo_content_type="image/jpeg",
                    lat=42.3663, lon=-71.1056, category="pothole")  # fmt: skip
    return store.create_case(report, 10)


def _read(lines: Iterator[str], n: int, *, want_heartbeat: bool = False) -> dict[str, Any]:
    """The next n events (and how many heartbeats came) from an open stream's lines."""
    events: list[dict[str, Any]] = []
    beats, field = 0, {}
    deadline = time.monotonic() + 15
    for line in lines:
        assert time.monotonic() < deadline, f"stream stalled after {events}"
        if line.startswith(":"):
            beats += 1
        elif line == "":
            if "data" in field:
                events.append({**field, "data": json.loads(field["data"])})
            field = {}
        else:
            key, _, value = line.partition(": ")
            field[key] = value
        if len(events) >= n and (beats or not want_heartbeat):
            break
    return {"events": events, "heartbeats": beats}


def test_case_stream_replays_then_follows_and_resumes(server: tuple[str, Any, Any]) -> None:
    url, store, _ = server
    cid = _case(store, "a")
    store.transition(cid, "needs_review", by="worker:1", why="measured")
    with httpx.stream("GET", f"{url}/api/v1/reports/{cid}/events", timeout=15) as r:
        lines = r.iter_lines()
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        first = _read(lines, 2)["events"]
        assert [e["data"]["status"] for e in first] == ["received", "needs_review"]
        assert first[1]["event"] == "case.status_changed"
        assert "by" not in first[1]["data"]  # the public stream does not say who
        threading.Timer(0.2, store.transition, (cid, "open"), {"by": "crew:9"}).start()
        got = _read(lines, 1, want_heartbeat=True)
        assert [e["data"]["status"] for e in got["events"]] == ["open"]
        assert got["events"][0]["data"]["previous_status"] == "needs_review"
        last_seen = got["events"][0]["id"]
        got = _read(lines, 0, want_heartbeat=True)  # quiet: heartbeats keep it open
        assert got["heartbeats"] >= 1
    # Gone for a while; the client comes back with the last id it saw.
    store.transition(cid, "in_progress", by="crew:9")
    store.note(cid, by="crew:9", why="cones placed")
    store.transition(cid, "closed", by="crew:9", resolution="fixed")
    headers = {"Last-Event-ID": last_seen}
    with httpx.stream(
        "GET", f"{url}/api/v1/reports/{cid}/events", headers=headers, timeout=15
    ) as r:
        lines = r.iter_lines()
        missed = _read(lines, 3)["events"]
    assert [(e["event"], e["data"]["status"]) for e in missed] == [
        ("case.status_changed", "in_progress"), ("case.noted", "in_progress"),
        ("case.status_changed", "closed"),
    ]  # fmt: skip
    assert all(int(e["id"]) > int(last_seen) for e in missed)
    # The query parameter does the same for clients that cannot set headers.
    q = f"{url}/api/v1/reports/{cid}/events?last_event_id={missed[1]['id']}"
    with httpx.stream("GET", q, timeout=15) as r:
        lines = r.iter_lines()
        assert [e["data"]["status"] for e in _read(lines, 1)["events"]] == ["closed"]


def test_staff_stream_is_for_staff_and_carries_every_case(server: tuple[str, Any, Any]) -> None:
    url, store, _ = server
    assert httpx.get(f"{url}/api/v1/events", timeout=5).status_code == 401

    def bearer(role: str) -> dict[str, str]:
        acct = accounts.create_account(store, f"{role}@city.test", "pw-" + "x" * 12, role, log2_n=4)
        return {"Authorization": f"Bearer {accounts.issue_token(store, acct, 600)[0]}"}

    assert (
        httpx.get(f"{url}/api/v1/events", headers=bearer("resident"), timeout=5).status_code == 403
    )
    old = _case(store, "old")  # before the stream opened: not sent
    with httpx.stream("GET", f"{url}/api/v1/events", headers=bearer("crew"), timeout=15) as r:
        lines = r.iter_lines()
        assert r.status_code == 200
        _read(lines, 0)  # the stream is open (its retry line came)
        a, b = _case(store, "a"), _case(store, "b")
        store.transition(a, "open", by="crew:1", why="accepted")
        got = _read(lines, 3)["events"]
    assert [(e["data"]["case_id"], e["data"]["status"]) for e in got] == [
        (a, "received"), (b, "received"), (a, "open"),
    ]  # fmt: skip
    assert old not in {e["data"]["case_id"] for e in got}
    assert got[2]["data"]["by"] == "crew:1"


def test_stream_refuses_unknown_cases_and_bad_resume_ids(
    sqlite_server: tuple[str, Any, Any],
) -> None:
    url, store, _ = sqlite_server
    r = httpx.get(f"{url}/api/v1/reports/no-such-case/events", timeout=5)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    cid = _case(store, "x")
    r = httpx.get(f"{url}/api/v1/reports/{cid}/events", headers={"Last-Event-ID": "abc"}, timeout=5)
    assert r.status_code == 422 and r.json()["field"] == "Last-Event-ID"


def test_a_stream_ends_after_its_lifetime(sqlite_server: tuple[str, Any, Any]) -> None:
    url, store, settings = sqlite_server
    settings.sse_max_s = 0.5
    cid = _case(store, "y")
    with httpx.stream("GET", f"{url}/api/v1/reports/{cid}/events", timeout=15) as r:
        lines = list(r.iter_lines())  # returns: the server ended the stream
    assert any(line.startswith("id: ") for line in lines)
    assert lines[0] == "retry: 3000"

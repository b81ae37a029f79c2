"""Crew actions and staff views: transitions recorded with the actor; contacts for staff only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pipeline import accounts, actions
from pipeline.errors import InvalidTransition
from pipeline.media import sha256_hex
from pipeline.settings import Settings
from pipeline.store import SqlCaseStore
from pipeline.types import Report

LAT, LON = 42.3663, -71.1056


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    settings.sweep_interval_s = 0
    settings.ratelimit_enabled = False
    with TestClient(create_app(settings)) as c:
        yield c


def _store(client: TestClient) -> SqlCaseStore:
    return client.app.state.ctx.store  # type: ignore[attr-defined]


def _case(store: SqlCaseStore, tag: str, status: str = "needs_review", named: bool = True) -> str:
    report = Report(
        photo_sha256=sha256_hex(tag.encode()), photo_content_type="image/jpeg", lat=LAT, lon=LON,
        anonymous=not named, contact_name="Lena Ortiz" if named else None,
        contact_email="lena@example.org" if named else None,
    )  # fmt: skip
    case_id = store.create_case(report, 10)
    store.transition(case_id, status, by="worker", why="processed")  # type: ignore[arg-type]
    return case_id


def _as(client: TestClient, role: str) -> tuple[dict[str, str], accounts.Account]:
    acct = accounts.create_account(
        _store(client), f"{role}-{id(client)}@city.test", "pw-" + "x" * 12, role, log2_n=4
    )
    token, _ = accounts.issue_token(_store(client), acct, 600)
    return {"Authorization": f"Bearer {token}"}, acct


def _act(client: TestClient, case_id: str, headers: dict, **body: object):
    return client.post(f"/api/v1/cases/{case_id}/actions", json=body, headers=headers)


def test_a_case_through_its_life_with_the_actor_recorded(client: TestClient) -> None:
    crew, acct = _as(client, "crew")
    cid = _case(_store(client), "life")
    r = _act(client, cid, crew, action="acknowledge")
    assert r.status_code == 200 and r.json()["status"] == "open"
    assert _act(client, cid, crew, action="start", note="crew 4 on site").json()["status"] == (
        "in_progress"
    )
    r = _act(client, cid, crew, action="resolve")
    assert r.status_code == 422 and r.json()["field"] == "note"
    r = _act(client, cid, crew, action="resolve", note="patched with cold mix")
    body = r.json()
    assert body["status"] == "closed" and body["resolution"] == "fixed"
    last = body["history"][-1]
    assert (
        last["by"] == f"crew:{acct.id}" and last["why"] == "resolved: fixed: patched with cold mix"
    )
    assert [h["status"] for h in body["history"]] == [
        "received", "needs_review", "open", "in_progress", "closed",
    ]  # fmt: skip
    # Closing it again is refused and changes nothing.
    r = _act(client, cid, crew, action="resolve", note="again")
    assert r.status_code == 409 and r.json()["error"] == "invalid_transition"
    assert "closed" in r.json()["message"]
    assert len(_store(client).get(cid).history) == 5


def test_staff_see_contact_details_and_the_public_never_does(client: TestClient) -> None:
    crew, acct = _as(client, "crew")
    cid = _case(_store(client), "contact")
    _act(client, cid, crew, action="acknowledge")
    staff = client.get(f"/api/v1/cases/{cid}", headers=crew).json()
    assert staff["report"]["contact_email"] == "lena@example.org"
    assert "reporter_account_id" in staff
    queue = client.get("/api/v1/cases", params={"status": "open"}, headers=crew).json()["cases"]
    assert [c["id"] for c in queue] == [cid] and queue[0]["report"]["contact_name"] == "Lena Ortiz"
    public = client.get(f"/api/v1/reports/{cid}").json()
    assert "contact_email" not in public["report"] and "contact_name" not in public["report"]
    assert "lena" not in str(public).lower() and acct.id not in str(public)
    assert public["history"][-1]["by"] == "crew"  # the role, not the person


@pytest.mark.parametrize(("role", "code"), [("analyst", 403), ("resident", 403), (None, 401)])
def test_only_crew_and_admin_act(client: TestClient, role: str | None, code: int) -> None:
    cid = _case(_store(client), f"who-{role}")
    headers = _as(client, role)[0] if role else {}
    assert _act(client, cid, headers, action="acknowledge").status_code == code
    assert client.get(f"/api/v1/cases/{cid}", headers=headers).status_code == code
    assert _store(client).status(cid) == "needs_review"


def test_reject_needs_a_reason_and_admin_may_act(client: TestClient) -> None:
    admin, _ = _as(client, "admin")
    cid = _case(_store(client), "reject", status="failed")
    assert _act(client, cid, admin, action="reject").status_code == 422
    r = _act(client, cid, admin, action="reject", note="photo of a cat, not a street problem")
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert _act(client, cid, admin, action="start").status_code == 409


def test_duplicates_point_at_the_original(client: TestClient) -> None:
    crew, _ = _as(client, "crew")
    store = _store(client)
    a, b, c = (_case(store, t) for t in ("dup-a", "dup-b", "dup-c"))
    r = _act(client, b, crew, action="duplicate", duplicate_of=a)
    assert r.json()["status"] == "closed" and r.json()["resolution"] == "duplicate"
    assert r.json()["duplicate_of"] == a
    assert _act(client, c, crew, action="duplicate", duplicate_of=b).json()["duplicate_of"] == a
    assert _act(client, a, crew, action="duplicate", duplicate_of=a).status_code == 422
    r = _act(client, a, crew, action="duplicate", duplicate_of="no-such-case")
    assert r.status_code == 422 and r.json()["field"] == "duplicate_of"
    assert store.status(a) == "needs_review"


@pytest.mark.parametrize(
    "body",
    [
        {"action": "teleport"},
        {"action": "resolve", "note": "x", "resolution": "duplicate"},
        {"action": "acknowledge", "duplicate_of": "abc"},
        {"action": "resolve", "note": "x" * 2001},
        {},
    ],
    ids=["unknown-action", "resolve-as-duplicate", "stray-duplicate-of", "long-note", "empty"],
)
def test_bad_actions_are_422_and_change_nothing(client: TestClient, body: dict) -> None:
    crew, _ = _as(client, "crew")
    cid = _case(_store(client), "bad")
    r = client.post(f"/api/v1/cases/{cid}/actions", json=body, headers=crew)
    assert r.status_code == 422, r.text
    assert len(_store(client).get(cid).history) == 2


def test_unknown_case_is_404(client: TestClient) -> None:
    crew, _ = _as(client, "crew")
    r = _act(client, "00000000-0000-0000-0000-000000000000", crew, action="acknowledge")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlCaseStore]:
    url = (
        f"sqlite:///{tmp_path / 'cases.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_database")()
    )
    s = SqlCaseStore(url)
    yield s
    s.close()


def test_two_crews_acting_at_once_cannot_both_win(store: SqlCaseStore) -> None:
    cid = _case(store, "race", status="open")
    results: list[str] = []
    gate = threading.Barrier(6)

    def resolve(i: int) -> None:
        gate.wait()
        try:
            actions.act(store, cid, "resolve", by=f"crew:{i}", note=f"fixed by {i}")
            results.append("won")
        except InvalidTransition:
            results.append("refused")

    threads = [threading.Thread(target=resolve, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == ["refused"] * 5 + ["won"]
    history = store.get(cid).history
    assert [h.status for h in history].count("closed") == 1

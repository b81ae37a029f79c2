"""Webhook subscriptions over the API, with real accounts and API keys: who may manage which,
and a crew action reaching a real receiver, signed, with the delivery log to show for it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from webhook_receiver import Receiver

from api.app import create_app
from pipeline import accounts
from pipeline.media import sha256_hex
from pipeline.notify import run_once
from pipeline.senders import make_sender
from pipeline.settings import Settings
from pipeline.store import SqlCaseStore
from pipeline.types import Report

URL = "/api/v1/webhooks"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    settings.sweep_interval_s = 0
    settings.ratelimit_enabled = False
    settings.webhook_allow_private = True
    settings.webhook_backoff_s, settings.webhook_backoff_cap_s = 0.02, 0.05
    with TestClient(create_app(settings)) as c:
        yield c


def _store(client: TestClient) -> SqlCaseStore:
    return client.app.state.ctx.store  # type: ignore[attr-defined]


def _account(client: TestClient, role: str) -> dict[str, str]:
    acct = accounts.create_account(
        _store(client), f"{role}@city.test", "pw-" + "x" * 12, role, log2_n=4
    )
    token, _ = accounts.issue_token(_store(client), acct, 600)
    return {"Authorization": f"Bearer {token}"}


def _key(client: TestClient, name: str, role: str = "analyst") -> dict[str, str]:
    key, _ = accounts.create_api_key(_store(client), name, role)
    return {"X-API-Key": key}


def test_who_may_manage_webhooks(client: TestClient) -> None:
    body = {"url": "http://127.0.0.1:9/hook"}
    assert client.post(URL, json=body).status_code == 401
    assert client.get(URL).status_code == 401
    for role in ("resident", "crew"):
        r = client.post(URL, json=body, headers=_account(client, role))
        assert r.status_code == 403, r.text
    analyst, admin = _account(client, "analyst"), _account(client, "admin")
    app_a, app_b = _key(client, "app-a"), _key(client, "app-b")
    made = {}
    for name, who in (("analyst", analyst), ("a", app_a), ("b", app_b)):
        r = client.post(URL, json={**body, "description": name}, headers=who)
        assert r.status_code == 201, r.text
        made[name] = r.json()
        assert r.json()["secret"].startswith("whsec_")
    # Analysts and admins see them all; a client app only its own.
    assert len(client.get(URL, headers=admin).json()) == 3
    assert [s["description"] for s in client.get(URL, headers=app_a).json()] == ["a"]
    assert "secret" not in client.get(URL, headers=analyst).json()[0]
    other = made["b"]["id"]
    assert client.get(f"{URL}/{other}", headers=app_a).status_code == 404
    assert client.delete(f"{URL}/{other}", headers=app_a).status_code == 404
    assert client.get(f"{URL}/{other}/deliveries", headers=app_a).status_code == 404
    assert client.get(f"{URL}/{other}", headers=app_b).status_code == 200
    assert client.delete(f"{URL}/{other}", headers=admin).status_code == 204
    assert client.get(f"{URL}/{other}", headers=app_b).status_code == 404
    assert len(client.get(URL, headers=analyst).json()) == 2


def test_bad_subscriptions_get_a_clear_4xx(client: TestClient) -> None:
    analyst = _account(client, "analyst")
    cases = [
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "http://127.0.0.1:9/h", "statuses": ["finished"]}, "statuses"),
        ({"url": "http://127.0.0.1:9/h", "secret": "short"}, "secret"),
        ({"url": "http://127.0.0.1:9/h", "colour": "red"}, "colour"),
        ({"url": "http://x/" + "a" * 3000}, "url"),
        ({"url": "http://127.0.0.1:9/h", "service_code": "unicorns"}, "service_code"),
        ({"url": "http://127.0.0.1:9/h", "case_id": "no-such-case"}, "case_id"),
    ]
    for body, field in cases:
        r = client.post(URL, json=body, headers=analyst)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"] == field
    assert client.get(URL, headers=analyst).json() == []
    assert client.get(f"{URL}/nope/deliveries", headers=analyst).status_code == 404


def test_a_crew_action_reaches_the_receiver_signed_and_logged(client: TestClient) -> None:
    analyst, crew = _account(client, "analyst"), _account(client, "crew")
    receiver = Receiver(fail_first=1).start()
    try:
        r = client.post(URL, json={"url": receiver.url, "statuses": ["open"]}, headers=analyst)
        sub = r.json()
        receiver.secret = sub["secret"]
        store = _store(client)
        report = Report(photo_sha256=sha256_hex(b"w"), photo_content_type="image/jpeg",
                        lat=42.3663, lon=-71.1056, category="pothole")  # fmt: skip
        cid = store.create_case(report, 10)
        store.transition(cid, "needs_review", by="worker", why="processed")
        r = client.post(f"/api/v1/cases/{cid}/actions", json={"action": "acknowledge"},
                        headers=crew)  # fmt: skip
        assert r.status_code == 200, r.text
        settings = client.app.state.ctx.settings  # type: ignore[attr-defined]
        for _ in range(50):
            run_once(store, settings, make_sender(settings))
            if any(x.answered == 200 for x in receiver.requests):
                break
            time.sleep(0.03)
    finally:
        receiver.stop()
    assert [x.answered for x in receiver.requests] == [500, 200]
    assert all(x.signature_ok for x in receiver.requests)
    event = receiver.requests[-1].event
    assert (event["case_id"], event["status"], event["previous_status"]) == (
        cid, "open", "needs_review",
    )  # fmt: skip
    assert event["by"].startswith("crew:")
    log = client.get(f"{URL}/{sub['id']}/deliveries", headers=analyst).json()
    assert len(log) == 1
    assert log[0]["state"] == "delivered" and log[0]["attempts"] == 2
    assert [a["status_code"] for a in log[0]["log"]] == [500, 200]
    failed = client.get(f"{URL}/{sub['id']}/deliveries?state=failed", headers=analyst)
    assert failed.json() == []

"""Notifications on SQLite and PostGIS: the fan-out from status history (restart-safe, never
twice), signed webhook deliveries to a real HTTP receiver with retries, reporter messages."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from webhook_receiver import Receiver

from pipeline.db import HistoryRow, aware, utcnow
from pipeline.errors import InvalidWebhook
from pipeline.events import frontier
from pipeline.media import sha256_hex
from pipeline.notify import fan_out, run_once
from pipeline.notify_db import FANOUT_CURSOR, DeliveryRow, MessageRow, NotifyCursorRow
from pipeline.senders import make_sender, outbox_path
from pipeline.settings import Settings
from pipeline.store import SqlCaseStore
from pipeline.types import Report
from pipeline.webhooks import create_subscription, deliver_due, sign, verify_signature

SECRET = "s3cret-for-the-tests-0123456789"


@pytest.fixture
def nsettings(tmp_path: Path, db_url: str) -> Settings:
    """Settings with fast retries, local receivers allowed, on the test's database."""
    return Settings(
        home=tmp_path / "home", database_url=db_url, webhook_allow_private=True,
        webhook_backoff_s=0.02, webhook_backoff_cap_s=0.05, webhook_timeout_s=0.5,
        webhook_max_attempts=4, notify_gap_grace_s=10.0,
        public_case_url="https://311.example.org/cases/{case_id}",
    )  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=SECRET).start()
    yield r
    r.stop()


def _case(store: SqlCaseStore, n: int, category: str = "pothole", **contact: object) -> str:
    report = Report(
        photo_sha256=sha256_hex(f"photo {n}".encode()), photo_content_type="image/jpeg",
        lat=42.37, lon=-71.11, category=category, anonymous=not contact, **contact,
    )  # fmt: skip
    return store.create_case(report, 10)


def _deliveries(store: SqlCaseStore) -> list[tuple[str, int]]:
    with store.session() as s:
        rows = s.execute(select(DeliveryRow.subscription_id, DeliveryRow.event_id)).all()
    return sorted((r[0], r[1]) for r in rows)


def _drain(store: SqlCaseStore, settings: Settings, batch: int = 200) -> int:
    total = 0
    while (done := fan_out(store, settings, batch=batch)).events:
        total += done.events
    return total


def test_fan_out_restarted_midway_queues_each_event_once_per_subscriber(
    store: SqlCaseStore, nsettings: Settings, db_url: str
) -> None:
    before = _case(store, 0)  # history before any subscription: never delivered
    everything = create_subscription(store, nsettings, owner="t", url="http://127.0.0.1:9/a")
    potholes = create_subscription(
        store, nsettings, owner="t", url="http://127.0.0.1:9/b", service_code="pothole"
    )
    closed = create_subscription(
        store, nsettings, owner="t", url="http://127.0.0.1:9/c", statuses=["closed"]
    )
    one_case = create_subscription(
        store, nsettings, owner="t", url="http://127.0.0.1:9/d", case_id=before
    )
    a, b = _case(store, 1, "pothole"), _case(store, 2, "graffiti")
    for cid in (a, b, before):
        store.transition(cid, "open", by="crew:1", why="accepted")
        store.transition(cid, "closed", by="crew:1", why="fixed", resolution="fixed")
    store.note(a, by="crew:1", why="photo of the repair added")
    # 10 events; the first (before's `received`) is older than every subscription.
    assert fan_out(store, nsettings, batch=4).events == 4
    store.close()
    restarted = SqlCaseStore(db_url)  # a new process: only the database remembers
    assert _drain(restarted, nsettings, batch=3) == 6
    assert _drain(restarted, nsettings) == 0
    got = _deliveries(restarted)
    per_sub = {s.id: sum(1 for sid, _ in got if sid == s.id) for s in (everything, potholes)}
    assert per_sub == {everything.id: 9, potholes.id: 4 + 2}  # a's 4 events; before's 2
    assert sum(1 for sid, _ in got if sid == closed.id) == 3  # changes into closed, no note
    assert sum(1 for sid, _ in got if sid == one_case.id) == 2
    assert len(got) == len(set(got))
    # A crash after the rows were committed but before anyone knew: the cursor goes back,
    # the fan-out reads the same events again, and queues nothing new.
    with restarted.session() as s:
        s.execute(
            update(NotifyCursorRow).where(NotifyCursorRow.name == FANOUT_CURSOR).values(position=0)
        )
    assert _drain(restarted, nsettings) == 10
    assert _deliveries(restarted) == got
    with restarted.session() as s:
        payloads = s.scalars(
            select(DeliveryRow.payload).where(DeliveryRow.subscription_id == closed.id)
        ).all()
    assert {p["status"] for p in payloads} == {"closed"}
    assert {p["previous_status"] for p in payloads} == {"open"}
    restarted.close()


def test_delivery_is_signed_and_retried_until_the_receiver_takes_it(
    store: SqlCaseStore, nsettings: Settings, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    sub = create_subscription(store, nsettings, owner="t", url=receiver.url, secret=SECRET)
    cid = _case(store, 1)
    fan_out(store, nsettings)
    for _ in range(50):
        deliver_due(store, nsettings)
        if any(r.answered == 200 for r in receiver.requests):
            break
        time.sleep(0.03)
    assert [r.answered for r in receiver.requests] == [500, 500, 200]
    assert all(r.signature_ok for r in receiver.requests)
    assert {r.event["case_id"] for r in receiver.requests} == {cid}
    assert receiver.requests[0].headers["StreetLens-Event"] == "case.status_changed"
    with store.session() as s:
        d = s.scalars(select(DeliveryRow).where(DeliveryRow.subscription_id == sub.id)).one()
    assert d.state == "delivered" and d.attempts == 3
    assert [e["status_code"] for e in d.log] == [500, 500, 200]
    deliver_due(store, nsettings)  # nothing is due any more
    assert len(receiver.requests) == 3


def test_timeouts_are_retried_then_the_delivery_is_marked_failed(
    store: SqlCaseStore, nsettings: Settings, receiver: Receiver
) -> None:
    receiver.stall_first, receiver.stall_s = 100, 1.0  # always slower than the 0.5 s timeout
    nsettings.webhook_max_attempts = 2
    create_subscription(store, nsettings, owner="t", url=receiver.url, secret=SECRET)
    _case(store, 1)
    fan_out(store, nsettings)
    for _ in range(40):
        deliver_due(store, nsettings)
        with store.session() as s:
            d = s.scalars(select(DeliveryRow)).one()
        if d.state != "pending":
            break
        time.sleep(0.03)
    assert d.state == "failed" and d.attempts == 2 and d.finished_at is not None
    assert all("Timeout" in e["error"] for e in d.log)
    assert len(receiver.requests) == 2


def test_reporters_get_plain_messages_and_anonymous_reporters_nothing(
    store: SqlCaseStore, nsettings: Settings
) -> None:
    named = _case(
        store, 1, contact_name="Ada", contact_email="ada@example.org", contact_phone="+16175550100"
    )
    anon = _case(store, 2)
    for cid in (named, anon):
        store.claim(cid, by="worker", lease_s=60)
        store.transition(cid, "open", by="pipeline", why="routed to Public Works")
        store.transition(cid, "closed", by="crew:7", why="patched", resolution="fixed")
    done = run_once(store, nsettings, make_sender(nsettings))
    assert done["sent"] == 4  # open and closed, by email and by SMS; received/processing: none
    lines = [json.loads(x) for x in outbox_path(nsettings).read_text().splitlines()]
    assert {m["case_id"] for m in lines} == {named}
    assert sorted((m["channel"], m["to"]) for m in lines) == [
        ("email", "ada@example.org"), ("email", "ada@example.org"),
        ("sms", "+16175550100"), ("sms", "+16175550100"),
    ]  # fmt: skip
    closed = next(m for m in lines if m["channel"] == "email" and "closed" in m["subject"])
    assert "changed from 'open' to 'closed'" in closed["body"]
    assert "the problem was fixed" in closed["body"]
    assert f"https://311.example.org/cases/{named}" in closed["body"]
    assert closed["body"].startswith("Hello Ada,")
    with store.session() as s:
        assert s.scalar(select(func.count()).where(MessageRow.case_id == anon)) == 0
    run_once(store, nsettings, make_sender(nsettings))  # a second round sends nothing again
    assert len(outbox_path(nsettings).read_text().splitlines()) == 4


def test_a_failing_sender_is_retried_later(store: SqlCaseStore, nsettings: Settings) -> None:
    nsettings.email_sender, nsettings.smtp_host, nsettings.smtp_port = "smtp", "127.0.0.1", 9
    nsettings.sms_sender = "none"
    cid = _case(store, 1, contact_email="bo@example.org")
    store.transition(cid, "open", by="pipeline")
    assert run_once(store, nsettings, make_sender(nsettings))["sent"] == 0
    with store.session() as s:
        m = s.scalars(select(MessageRow)).one()
    assert m.state == "pending" and m.attempts == 1 and "Connection" in (m.last_error or "")
    assert aware(m.next_attempt_at) > utcnow()


def test_frontier_waits_for_a_missing_id_until_it_is_old(store: SqlCaseStore) -> None:
    cid = _case(store, 1)
    with store.session() as s:
        top = s.scalar(select(func.max(HistoryRow.id)))
        # id top+1 is "still being committed": top+2 arrives first.
        s.add(HistoryRow(id=top + 2, case_id=cid, status="open", at=utcnow(), by="x", why=""))
    with store.session() as s:
        assert frontier(s, gap_grace_s=30) == top
        assert frontier(s, gap_grace_s=0) == top + 2  # a gap that old was rolled back


# PostgreSQL only: SQLite serializes writers, so its ids always commit in order.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_frontier_on_postgres_holds_back_an_uncommitted_earlier_row(
    store: SqlCaseStore, nsettings: Settings
) -> None:
    assert store.dialect == "postgresql"
    cid = _case(store, 1)
    slow = store.engine.connect()
    slow_tx = slow.begin()
    slow.execute(
        text(
            "INSERT INTO status_history (case_id, status, at, by, why) "
            "VALUES (:c, 'open', now(), 'slow', '')"
        ),
        {"c": cid},
    )
    store.transition(cid, "in_progress", by="fast")  # a later id, committed first
    with store.session() as s:
        fast_id = s.scalar(select(func.max(HistoryRow.id)))
        assert frontier(s, gap_grace_s=30) == fast_id - 2
    assert fan_out(store, nsettings).cursor == fast_id - 2
    slow_tx.commit()
    slow.close()
    assert fan_out(store, nsettings).cursor == fast_id


def test_signature_verification_refuses_tampering_and_replays() -> None:
    body = b'{"id":1}'
    now = int(time.time())
    header = sign(SECRET, body, now)
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, b'{"id":2}')
    assert not verify_signature("another-secret-0123456789", header, body)
    assert not verify_signature(SECRET, sign(SECRET, body, now - 3600), body)
    assert not verify_signature(SECRET, "v1=abc", body)


def test_subscription_urls_are_checked(store: SqlCaseStore, nsettings: Settings) -> None:
    nsettings.webhook_allow_private = False
    for url in ("ftp://example.org/x", "http:///nohost", "http://127.0.0.1:8000/hook",
                "http://10.1.2.3/hook", "http://[::1]/hook"):  # fmt: skip
        with pytest.raises(InvalidWebhook):
            create_subscription(store, nsettings, owner="t", url=url)
    with pytest.raises(InvalidWebhook):
        create_subscription(
            store, nsettings, owner="t", url="https://93.184.215.14/h", statuses=["done"]
        )


def test_email_goes_out_through_a_real_smtp_server(
    store: SqlCaseStore, nsettings: Settings
) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got: list = []

    class Keep(Message):
        def handle_message(self, message: object) -> None:
            got.append(message)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(Keep(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        nsettings.email_sender, nsettings.sms_sender = "smtp", "none"
        nsettings.smtp_host, nsettings.smtp_port = "127.0.0.1", port
        cid = _case(store, 1, contact_email="cy@example.org", contact_phone="+16175550101")
        store.transition(cid, "in_progress", by="crew:2", why="crew on site")
        assert run_once(store, nsettings, make_sender(nsettings))["sent"] == 1
    finally:
        smtp.stop()
    assert len(got) == 1
    assert got[0]["To"] == "cy@example.org"
    assert "a crew is working on it" in got[0].get_payload(decode=True).decode()
    with store.session() as s:  # no SMS sender configured: no SMS queued either
        assert s.scalars(select(MessageRow.channel)).all() == ["email"]


def test_the_worker_notifier_delivers_on_its_own(
    store: SqlCaseStore, nsettings: Settings, receiver: Receiver
) -> None:
    from pipeline.context import Context
    from pipeline.notify import Notifier

    create_subscription(store, nsettings, owner="t", url=receiver.url, secret=SECRET)
    notifier = Notifier(Context(nsettings), interval_s=0.05)
    notifier.start()
    try:
        cid = _case(store, 1, contact_email="di@example.org")
        store.transition(cid, "open", by="pipeline", why="routed")
        deadline = time.monotonic() + 15
        while len(receiver.requests) < 2 or not outbox_path(nsettings).exists():
            assert time.monotonic() < deadline, "the notifier delivered nothing"
            time.sleep(0.05)
    finally:
        notifier.stop()
        notifier.join(timeout=10)
    assert [r.event["status"] for r in receiver.requests] == ["received", "open"]
    assert "di@example.org" in outbox_path(nsettings).read_text()


def test_a_restarted_notifier_posts_each_event_once(
    store: SqlCaseStore, nsettings: Settings, receiver: Receiver, db_url: str
) -> None:
    create_subscription(store, nsettings, owner="t", url=receiver.url, secret=SECRET)
    first = _case(store, 1)
    store.transition(first, "open", by="pipeline")
    run_once(store, nsettings, make_sender(nsettings))
    store.close()  # the worker stops; changes go on meanwhile
    again = SqlCaseStore(db_url)
    second = _case(again, 2)
    again.transition(first, "closed", by="crew:1", resolution="fixed")
    for _ in range(3):
        run_once(again, nsettings, make_sender(nsettings))
    again.close()
    ids = [r.event["id"] for r in receiver.requests]
    assert len(ids) == 4 and len(set(ids)) == 4 and ids == sorted(ids)
    assert {r.event["case_id"] for r in receiver.requests} == {first, second}


def test_two_workers_at_once_post_each_event_once(
    store: SqlCaseStore, nsettings: Settings, receiver: Receiver, db_url: str
) -> None:
    import threading

    create_subscription(store, nsettings, owner="t", url=receiver.url, secret=SECRET)
    for i in range(6):
        store.transition(_case(store, i), "open", by="pipeline")
    workers = [SqlCaseStore(db_url) for _ in range(2)]

    def work(s: SqlCaseStore) -> None:
        for _ in range(3):
            run_once(s, nsettings, make_sender(nsettings))

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for w in workers:
        w.close()
    ids = [r.event["id"] for r in receiver.requests]
    assert len(ids) == 12 and len(set(ids)) == 12

"""The embedded backends: by default the case store is the queue (no broker); kombu's SQLite
broker is still there when named, polling often enough and writing through WAL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.context import Context
from pipeline.health import broker_check, queue_depth
from pipeline.settings import Settings
from pipeline.tasks import TASK_NAME, enqueue


def test_by_default_the_store_is_the_queue(tmp_path: Path) -> None:
    ctx = Context(Settings(home=tmp_path / "home"))
    assert ctx.settings.task_queue == "store"
    assert enqueue(ctx, "case-1")  # nothing to send: the committed row is the message
    assert not (tmp_path / "home" / "broker.db").exists()
    assert broker_check(ctx)["ok"] and queue_depth(ctx) == 0


def test_the_named_sqlite_broker_polls_often_and_writes_through_wal(tmp_path: Path) -> None:
    broker = f"sqla+sqlite:///{tmp_path / 'home' / 'broker.db'}"
    ctx = Context(Settings(home=tmp_path / "home", broker_url=broker))
    assert ctx.settings.task_queue == "celery"
    with ctx.celery.connection_for_write() as conn:
        # kombu's default 1 s poll held a `worker --concurrency 2` to 2 cases/s.
        assert conn.transport.polling_interval <= 0.1
    assert enqueue(ctx, "case-1")
    with ctx.celery.connection_for_read() as conn, conn.SimpleQueue("celery") as queue:
        msg = queue.get(timeout=5)
        assert msg.headers["task"] == TASK_NAME and msg.headers["argsrepr"] == "['case-1']"
        msg.ack()
    with sqlite3.connect(tmp_path / "home" / "broker.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

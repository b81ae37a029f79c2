"""The embedded broker (kombu's SQLAlchemy transport on a SQLite file) as the fault tests and
the bench run it: a worker polls it often enough, and its file is in WAL mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.context import Context
from pipeline.settings import Settings
from pipeline.tasks import TASK_NAME, enqueue


def test_the_embedded_broker_polls_often_and_writes_through_wal(tmp_path: Path) -> None:
    ctx = Context(Settings(home=tmp_path / "home"))
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

"""Creating cases: one upload's rows in one transaction, alone or together with the other
uploads waiting at that moment (the group commit of pipeline/groupcommit.py)."""

from __future__ import annotations

import fcntl
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from pipeline.db import CaseRow, HistoryRow, PhotoRow, insert_or_keep, utcnow
from pipeline.types import Report

if TYPE_CHECKING:
    from pipeline.store import SqlCaseStore

CASE_INSERT = CaseRow.__table__.insert()
HISTORY_INSERT = HistoryRow.__table__.insert()


@dataclass(frozen=True)
class NewCase:
    """One upload's rows, waiting to be inserted."""

    report: Report
    size_bytes: int
    by: str
    idempotency_key: str | None
    also: Callable[[Connection, str], None] | None


def _photo_params(report: Report, size_bytes: int, now: datetime) -> dict[str, Any]:
    return {"sha256": report.photo_sha256, "content_type": report.photo_content_type,
            "size_bytes": size_bytes, "created_at": now}  # fmt: skip


def _case_params(case_id: str, item: NewCase, now: datetime) -> dict[str, Any]:
    r = item.report
    return {"id": case_id, "status": "received", "photo_sha256": r.photo_sha256,
            "report": r.model_dump(mode="json"), "category": r.category, "lat": r.lat,
            "lon": r.lon, "created_at": now, "updated_at": now,
            "idempotency_key": item.idempotency_key}  # fmt: skip


def _history_params(case_id: str, item: NewCase, now: datetime) -> dict[str, Any]:
    return {"case_id": case_id, "status": "received", "at": now, "by": item.by,
            "why": "photo uploaded" if item.report.photo_sha256 else "report received"}  # fmt: skip


def create_many(store: SqlCaseStore, items: list[NewCase]) -> list[str | BaseException]:
    """Insert several new cases in one transaction (three executemany statements). When
    one of them reuses an idempotency key the batch is rolled back and each goes alone,
    so every caller gets its own answer; the store being down fails them all."""
    if len(items) > 1:
        ids = [str(uuid.uuid4()) for _ in items]
        try:
            with writer_turn(store._turns), store.begin() as conn:
                _insert(conn, list(zip(ids, items, strict=True)))
            return ids
        except IntegrityError:
            pass  # a retried upload's key is in the batch: one at a time below
    out: list[str | BaseException] = []
    for item in items:
        try:
            out.append(create_one(store, item, turn=True))
        except Exception as exc:  # this caller's own error, raised there
            out.append(exc)
    return out


def _insert(conn: Connection, new: list[tuple[str, NewCase]]) -> None:
    """The rows of new cases: photos, cases, first history entries, then each one's extras."""
    now = utcnow()
    photos = [_photo_params(i.report, i.size_bytes, now) for _, i in new if i.report.photo_sha256]
    if photos:  # none for a report without a photo; a photo stored before keeps its row
        conn.execute(insert_or_keep(PhotoRow.__table__), photos)
    conn.execute(CASE_INSERT, [_case_params(c, i, now) for c, i in new])
    conn.execute(HISTORY_INSERT, [_history_params(c, i, now) for c, i in new])
    for case_id, item in new:
        if item.also is not None:  # more rows of the same upload (extra photos)
            item.also(conn, case_id)


@contextmanager
def writer_turn(path: Path | None) -> Iterator[None]:
    """SQLite: the committers of several API processes take turns through a lock file
    beside the database, which the kernel hands to the next waiter at once. SQLite's own
    busy handler sleeps up to 100 ms between tries, and a process that commits back to back
    can starve the other for a second (the p99 of bench/ingest.py before this)."""
    try:
        fh = open(path, "a") if path is not None else None  # noqa: SIM115
    except OSError:
        fh = None  # no lock file here: the busy handler still keeps writes correct
    if fh is None:
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def create_one(store: SqlCaseStore, item: NewCase, *, turn: bool = False) -> str:
    """Insert one new case; with a used idempotency key, that key's case (see create_case)."""
    case_id = str(uuid.uuid4())
    try:
        with writer_turn(store._turns) if turn else nullcontext(), store.begin() as conn:
            _insert(conn, [(case_id, item)])
    except IntegrityError:
        # The key was used before (a retry), or two retries of one upload raced.
        if item.idempotency_key is None:
            raise
        existing = store._by_key(item.idempotency_key, item.report.photo_sha256)
        if existing is None:
            raise
        return existing
    return case_id

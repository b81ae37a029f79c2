"""Status-change events, read from `status_history` (the one record every caller writes).

The history id is the event id: it orders events, is what a server-sent-event client sends
back as Last-Event-ID and what the fan-out's cursor remembers. Ids come from a sequence, and
on PostgreSQL a transaction that took id 10 may commit after one that took id 11; a reader
that moved past 11 would never see 10. So readers stop at the *frontier*: the last id below
which nothing is missing, except gaps older than `gap_grace_s` (a rolled-back transaction's
ids never arrive; a transaction open that long is not a status change being saved).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from pipeline.db import CaseRow, HistoryRow, aware, utcnow

# How many of the newest history ids the frontier looks at (one indexed query).
FRONTIER_WINDOW = 500


@dataclass(frozen=True)
class Event:
    """One recorded status change (or note) of one case."""

    id: int
    case_id: str
    status: str
    previous_status: str | None
    at: datetime
    by: str
    why: str
    service_code: str | None

    @property
    def changed(self) -> bool:
        """True when the status moved (a note keeps it)."""
        return self.status != self.previous_status

    @property
    def type(self) -> str:
        """The event's name in webhooks and streams."""
        return "case.status_changed" if self.changed else "case.noted"

    def payload(self, *, public: bool = False) -> dict[str, Any]:
        """The event as JSON; `public` leaves out who made the change."""
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "case_id": self.case_id,
            "service_code": self.service_code,
            "status": self.status,
            "previous_status": self.previous_status,
            "at": self.at.isoformat(),
            "why": self.why,
        }
        if not public:
            body["by"] = self.by
        return body


def frontier(s: Session, gap_grace_s: float) -> int:
    """The highest history id every event up to which can be read now (see the module)."""
    rows = s.execute(
        select(HistoryRow.id, HistoryRow.at).order_by(HistoryRow.id.desc()).limit(FRONTIER_WINDOW)
    ).all()
    if not rows:
        return 0
    rows.reverse()
    settled = utcnow() - timedelta(seconds=gap_grace_s)
    # Everything at or below the newest settled row is final; above it, stop at the first gap.
    base_idx = max((i for i, r in enumerate(rows) if aware(r.at) <= settled), default=None)
    if base_idx is None:
        base_idx = 0
    last = rows[base_idx].id
    for r in rows[base_idx + 1 :]:
        if r.id != last + 1:
            break
        last = r.id
    return last


def read_events(
    s: Session, after: int, *, upto: int, case_id: str | None = None, limit: int = 200
) -> list[Event]:
    """Events with after < id <= upto, oldest first, each with the status before it."""
    if upto <= after:
        return []
    prev = aliased(HistoryRow)
    previous = (
        select(prev.status)
        .where(prev.case_id == HistoryRow.case_id, prev.id < HistoryRow.id)
        .order_by(prev.id.desc())
        .limit(1)
        .correlate(HistoryRow)
        .scalar_subquery()
    )
    q = (
        select(HistoryRow, CaseRow.category, previous.label("previous"))
        .join(CaseRow, CaseRow.id == HistoryRow.case_id)
        .where(HistoryRow.id > after, HistoryRow.id <= upto)
        .order_by(HistoryRow.id)
        .limit(limit)
    )
    if case_id is not None:
        q = q.where(HistoryRow.case_id == case_id)
    return [
        Event(
            id=h.id,
            case_id=h.case_id,
            status=h.status,
            previous_status=p,
            at=aware(h.at),
            by=h.by,
            why=h.why or "",
            service_code=category,
        )
        for h, category, p in s.execute(q)
    ]


def latest_event_id(s: Session) -> int:
    """The newest history id (0 when there is none)."""
    return s.scalar(select(HistoryRow.id).order_by(HistoryRow.id.desc()).limit(1)) or 0

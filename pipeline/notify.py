"""The notification fan-out: status history in, webhook deliveries and reporter messages out.

Every status change is already a `status_history` row, written by whoever made it (the
upload, processing, retries, the sweeper, a crew). The fan-out reads the rows past a cursor
kept in the database (`notify_cursors`), and in one transaction queues a delivery for each
matching webhook subscription, a message for the reporter, and moves the cursor. A restart
resumes at the cursor; the unique (subscription, event) and (event, channel) keys make a
second fan-out over the same rows (two workers, a crash after the commit was sent) queue
nothing twice. `Notifier` runs the fan-out and the senders in each worker
(`streetlens worker`), every `notify_interval_s`; `streetlens notify` runs one round.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pipeline.db import CaseRow, utcnow
from pipeline.events import Event, frontier, latest_event_id, read_events
from pipeline.notify_db import FANOUT_CURSOR, DeliveryRow, MessageRow, NotifyCursorRow, WebhookRow
from pipeline.senders import ChannelSender, compose, make_sender, send_due
from pipeline.settings import Settings
from pipeline.webhooks import deliver_due

if TYPE_CHECKING:
    from pipeline.context import Context

log = logging.getLogger(__name__)

BATCH = 200


@dataclass(frozen=True)
class FanOut:
    """What one fan-out round did."""

    events: int
    deliveries: int
    messages: int
    cursor: int


def _insert_ignoring_duplicates(s: Any, dialect: str, table: Any, rows: list[dict]) -> None:
    if not rows:
        return
    ins = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    s.execute(ins.on_conflict_do_nothing(), rows)


def fan_out(
    store: Any, settings: Settings, *, channels: set[str] | None = None, batch: int = BATCH
) -> FanOut:
    """Queue deliveries and messages for the next events past the cursor; move the cursor."""
    now = utcnow()
    with store.session() as s:
        cursor = s.scalars(
            select(NotifyCursorRow).where(NotifyCursorRow.name == FANOUT_CURSOR).with_for_update()
        ).one_or_none()
        if cursor is None:  # a store migrated before 0004 seeded it: start from now
            cursor = NotifyCursorRow(
                name=FANOUT_CURSOR, position=latest_event_id(s), updated_at=now
            )
            s.add(cursor)
            s.flush()
        events = read_events(
            s, cursor.position, upto=frontier(s, settings.notify_gap_grace_s), limit=batch
        )
        if not events:
            return FanOut(0, 0, 0, cursor.position)
        subs = list(s.scalars(select(WebhookRow).where(WebhookRow.active.is_(True))))
        case_ids = {e.case_id for e in events}
        cases = {
            c.id: c
            for c in s.execute(
                select(
                    CaseRow.id, CaseRow.report, CaseRow.place, CaseRow.category, CaseRow.resolution
                ).where(CaseRow.id.in_(case_ids))
            )
        }
        deliveries, messages = [], []
        for e in events:
            payload = e.payload()
            for sub in subs:
                if e.id <= sub.after_event_id or not _matches(sub, e):
                    continue
                deliveries.append(
                    {
                        "subscription_id": sub.id,
                        "event_id": e.id,
                        "case_id": e.case_id,
                        "payload": payload,
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "log": [],
                        "created_at": now,
                    }
                )
            c = cases.get(e.case_id)
            if c is None:
                continue
            case = {"category": c.category, "place": c.place, "resolution": c.resolution}
            for m in compose(e, c.report or {}, case, settings):
                if channels is not None and m.channel not in channels:
                    continue
                messages.append(
                    {
                        "event_id": e.id,
                        "case_id": e.case_id,
                        "channel": m.channel,
                        "recipient": m.to,
                        "subject": m.subject,
                        "body": m.body,
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
        _insert_ignoring_duplicates(s, store.dialect, DeliveryRow.__table__, deliveries)
        _insert_ignoring_duplicates(s, store.dialect, MessageRow.__table__, messages)
        cursor.position = events[-1].id
        cursor.updated_at = now
        return FanOut(len(events), len(deliveries), len(messages), cursor.position)


def _matches(sub: WebhookRow, e: Event) -> bool:
    # A status filter asks for changes *into* those statuses: notes (no change) do not pass.
    return (
        (sub.service_code is None or sub.service_code == e.service_code)
        and (sub.case_id is None or sub.case_id == e.case_id)
        and (not sub.statuses or (e.changed and e.status in sub.statuses))
    )


def run_once(store: Any, settings: Settings, sender: ChannelSender) -> dict[str, int]:
    """One round: fan out everything readable, then attempt due deliveries and messages."""
    events = 0
    while True:
        done = fan_out(store, settings, channels=sender.channels)
        events += done.events
        if done.events < BATCH:
            break
    delivered = deliver_due(store, settings)
    sent = send_due(store, sender)
    return {"events": events, "delivered": delivered, "sent": sent}


class Notifier(threading.Thread):
    """Runs `run_once` every interval until stopped (one per worker process)."""

    def __init__(self, ctx: Context, interval_s: float) -> None:
        super().__init__(name="streetlens-notifier", daemon=True)
        self.ctx = ctx
        self.interval_s = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Loop; a failing round is logged, never fatal."""
        sender = make_sender(self.ctx.settings)
        while not self._stop_event.wait(self.interval_s):
            try:
                run_once(self.ctx.store, self.ctx.settings, sender)
            except Exception:
                log.exception("notification round failed")

    def stop(self) -> None:
        """Ask the loop to end."""
        self._stop_event.set()

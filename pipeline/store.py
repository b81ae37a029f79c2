"""The case store: cases, findings, photos and status history on SQLite or PostgreSQL + PostGIS.

One API on both: SQLite (the default, one file) and PostgreSQL + PostGIS (scale-out). The schema
comes from Alembic migrations applied when the store opens; `cases_near` finds cases around a
point with ST_DWithin on PostGIS and with a bounding box plus haversine on SQLite, measuring on
the same sphere so both answer alike.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from pipeline.db import (
    Base,
    CaseRow,
    FindingRow,
    HistoryRow,
    PhotoRow,
    aware,
    make_engine,
    migrate,
    upgrade,
    utcnow,
)
from pipeline.errors import CaseNotFound, IdempotencyConflict, InvalidReport, StoreUnavailable
from pipeline.groupcommit import GroupCommitter
from pipeline.store_create import HISTORY_INSERT, NewCase, create_many, create_one
from pipeline.store_geo import (  # EARTH_RADIUS_M and _near_postgis: re-exported
    EARTH_RADIUS_M,
    NEAR_COLS,
    _bbox,
    _check_point,
    _near_postgis,
    haversine_m,
)
from pipeline.types import Case, Finding, Report, Routing, Status, StatusChange

__all__ = [
    "EARTH_RADIUS_M",
    "OPEN_STATUSES",
    "Base",
    "CaseRow",
    "FindingRow",
    "HistoryRow",
    "NearbyCase",
    "PhotoRow",
    "SqlCaseStore",
    "haversine_m",
    "make_engine",
    "migrate",
    "utcnow",
]

# The cases a new report can duplicate: still in front of a crew, not yet resolved.
OPEN_STATUSES: tuple[Status, ...] = ("needs_review", "open", "in_progress")


@dataclass(frozen=True)
class NearbyCase:
    """A case found near a point, with its great-circle distance from it."""

    id: str
    distance_m: float
    status: Status
    category: str | None
    lat: float
    lon: float
    created_at: datetime


class SqlCaseStore:
    """Cases in SQLite (default) or PostgreSQL + PostGIS; the schema is migrated on open."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self._committer: GroupCommitter[NewCase, str] | None = None
        self._committer_lock = threading.Lock()
        db = self.engine.url.database if self.dialect == "sqlite" else None
        self._turns = Path(f"{db}-writers.lock") if db and db != ":memory:" else None
        upgrade(self.engine)

    def close(self) -> None:
        """Release the connection pool (the store can still be used; it reconnects)."""
        if self._committer is not None:
            self._committer.close()
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                yield s
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(f"case store unavailable: {exc.orig}") from exc

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A Core connection in a transaction (no ORM): the hot paths' few statements."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(f"case store unavailable: {exc.orig}") from exc

    def create_case(
        self,
        report: Report,
        size_bytes: int,
        *,
        by: str = "resident",
        idempotency_key: str | None = None,
        also: Callable[[Connection, str], None] | None = None,
        group: bool = False,
    ) -> str:
        """Insert a `received` case, its photo row and its history in one transaction (three
        Core statements, no ORM); return its id.

        With an idempotency key already used, return that case's id instead (a retried
        upload); IdempotencyConflict when the key was used for another photo. The key's
        unique index decides, so a first upload pays no lookup and racing retries make one
        case. `group`: commit together with the other uploads waiting at this moment
        (pipeline/groupcommit.py): the upload path's choice; the result is the same."""
        item = NewCase(report, size_bytes, by, idempotency_key, also)
        if group:
            return self._group_committer().submit(item)
        return create_one(self, item)

    def _group_committer(self) -> GroupCommitter[NewCase, str]:
        if self._committer is None:
            with self._committer_lock:
                if self._committer is None:
                    from pipeline.observability import COMMIT_BATCH

                    self._committer = GroupCommitter(
                        functools.partial(create_many, self), on_batch=COMMIT_BATCH.observe
                    )
        return self._committer

    def _by_key(self, key: str, photo_sha256: str) -> str | None:
        with self.session() as s:
            row = s.execute(
                select(CaseRow.id, CaseRow.photo_sha256).where(CaseRow.idempotency_key == key)
            ).first()
        if row is None:
            return None
        if row.photo_sha256 != photo_sha256:
            raise IdempotencyConflict(
                f"idempotency key {key[:40]!r} was already used for a different photo: "
                "use a new key for a new report"
            )
        return row.id

    def claim(self, case_id: str, *, by: str, lease_s: float) -> bool:
        """Atomically take a case for processing: from `received`, or from a `processing`
        whose lease ran out (its worker died). False when someone else has it or it is done."""
        now = utcnow()
        stale = now - timedelta(seconds=lease_s)
        with self.session() as s:
            res = s.execute(
                update(CaseRow)
                .where(
                    CaseRow.id == case_id,
                    or_(
                        CaseRow.status == "received",
                        and_(CaseRow.status == "processing", CaseRow.updated_at < stale),
                    ),
                )
                .values(status="processing", updated_at=now)
            )
            if res.rowcount != 1:
                return False
            s.add(
                HistoryRow(
                    case_id=case_id, status="processing", at=now, by=by,
                    why="detecting, measuring and locating",
                )
            )  # fmt: skip
            return True

    def claim_next(self, *, by: str, lease_s: float) -> str | None:
        """Take the oldest claimable case (what the store-queue worker runs next): a `received`
        one that is due, or a `processing` one whose lease ran out. One UPDATE ... WHERE id =
        (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, so two workers never take
        the same case (SQLite serialises writers; PostgreSQL skips rows another one locked)."""
        now = utcnow()
        due = or_(
            and_(CaseRow.status == "received", CaseRow.updated_at <= now),
            and_(
                CaseRow.status == "processing",
                CaseRow.updated_at < now - timedelta(seconds=lease_s),
            ),
        )
        pick = (
            select(CaseRow.id).where(due).order_by(CaseRow.updated_at).limit(1)
            .with_for_update(skip_locked=True).scalar_subquery()
        )  # fmt: skip
        with self.begin() as conn:
            case_id = conn.execute(
                update(CaseRow.__table__)
                .where(CaseRow.id == pick, due)
                .values(status="processing", updated_at=now)
                .returning(CaseRow.id)
            ).scalar()
            if case_id is None:
                return None
            conn.execute(
                HISTORY_INSERT,
                {"case_id": case_id, "status": "processing", "at": now, "by": by,
                 "why": "detecting, measuring and locating"},
            )  # fmt: skip
            return case_id

    def renew(self, case_id: str) -> bool:
        """Extend the lease of a case being processed (its worker is alive); False when the
        case is no longer `processing`."""
        with self.begin() as conn:
            res = conn.execute(
                update(CaseRow.__table__)
                .where(CaseRow.id == case_id, CaseRow.status == "processing")
                .values(updated_at=utcnow())
            )
            return res.rowcount == 1

    def release(self, case_id: str, *, by: str, why: str, retry_in_s: float = 0.0) -> None:
        """Hand a `processing` case back to `received` (before a retry). With retry_in_s its
        updated_at is set that far ahead: the store-queue worker does not take it before
        then (the backoff), and the sweeper does not count its grace from before then."""
        now = utcnow()
        with self.session() as s:
            res = s.execute(
                update(CaseRow)
                .where(CaseRow.id == case_id, CaseRow.status == "processing")
                .values(status="received", updated_at=now + timedelta(seconds=retry_in_s))
            )
            if res.rowcount == 1:
                s.add(HistoryRow(case_id=case_id, status="received", at=now, by=by, why=why))

    def touch_received(self, case_ids: list[str]) -> None:
        """Restart the grace of `received` cases (the sweeper has just sent them again)."""
        if case_ids:
            with self.begin() as conn:
                conn.execute(
                    update(CaseRow.__table__)
                    .where(CaseRow.id.in_(case_ids), CaseRow.status == "received")
                    .values(updated_at=utcnow())
                )

    def waiting(self) -> int:
        """Cases waiting in `received`: the store-queue's depth."""
        return self.count("received")

    def stuck(self, *, received_s: float, processing_s: float, limit: int = 500) -> list[str]:
        """Cases waiting in `received` longer than received_s, or in `processing` past the
        lease: the sweeper enqueues them again."""
        now = utcnow()
        with self.session() as s:
            q = (
                select(CaseRow.id)
                .where(
                    or_(
                        and_(
                            CaseRow.status == "received",
                            CaseRow.updated_at < now - timedelta(seconds=received_s),
                        ),
                        and_(
                            CaseRow.status == "processing",
                            CaseRow.updated_at < now - timedelta(seconds=processing_s),
                        ),
                    )
                )
                .order_by(CaseRow.updated_at)
                .limit(limit)
            )
            return list(s.scalars(q))

    def get(self, case_id: str) -> Case:
        """The case with this id, or CaseNotFound."""
        with self.session() as s:
            row = s.get(CaseRow, case_id)
            if row is None:
                raise CaseNotFound(f"no case with id {case_id!r}")
            return _to_case(row)

    def status(self, case_id: str) -> Status:
        """Only the status (cheap)."""
        with self.session() as s:
            st = s.scalar(select(CaseRow.status).where(CaseRow.id == case_id))
            if st is None:
                raise CaseNotFound(f"no case with id {case_id!r}")
            return st  # type: ignore[return-value]

    def transition(
        self, case_id: str, status: Status, *, by: str, why: str = "", **fields: Any
    ) -> None:
        """Move a case to `status`, recording who and why, and set other columns."""
        now = utcnow()
        with self.session() as s:
            row = s.get(CaseRow, case_id)
            if row is None:
                raise CaseNotFound(f"no case with id {case_id!r}")
            row.status = status
            row.updated_at = now
            for key, value in fields.items():
                setattr(row, key, value)
            row.history.append(HistoryRow(status=status, at=now, by=by, why=why))

    def save_result(
        self,
        case_id: str,
        *,
        status: Status,
        findings: list[Finding],
        category: str | None,
        severity: str | None,
        place: dict | None,
        lat: float | None,
        lon: float | None,
        routing: Routing | None,
        by: str,
        why: str,
        duplicate_of: str | None = None,
        resolution: str | None = None,
    ) -> None:
        """Write the processing result and its status change in one transaction."""
        now = utcnow()
        with self.session() as s:
            row = s.get(CaseRow, case_id)
            if row is None:
                raise CaseNotFound(f"no case with id {case_id!r}")
            row.findings.clear()  # idempotent: a re-run replaces, never appends
            s.flush()
            for i, f in enumerate(findings):
                row.findings.append(
                    FindingRow(
                        idx=i,
                        class_name=f.class_name,
                        confidence=f.confidence,
                        area_m2=f.measurement.area_m2,
                        data=f.model_dump(mode="json"),
                    )
                )
            row.status = status
            row.category = category
            row.severity = severity
            row.place = place
            row.lat, row.lon = lat, lon
            row.routing = routing.model_dump(mode="json") if routing else None
            row.error = None
            row.duplicate_of = duplicate_of
            row.resolution = resolution
            row.updated_at = now
            row.history.append(HistoryRow(status=status, at=now, by=by, why=why))

    def note(self, case_id: str, *, by: str, why: str) -> None:
        """Record an event in a case's history without changing its status."""
        with self.session() as s:
            row = s.get(CaseRow, case_id)
            if row is None:
                raise CaseNotFound(f"no case with id {case_id!r}")
            row.history.append(HistoryRow(status=row.status, at=utcnow(), by=by, why=why))

    def photo_in_use(self, sha256: str) -> bool:
        """True when any case refers to this photo, as its first photo or an extra one."""
        from pipeline.case_photos import in_use

        return in_use(self, sha256)

    def count(self, status: Status | None = None) -> int:
        """Number of cases, optionally with one status."""
        with self.session() as s:
            q = select(func.count()).select_from(CaseRow)
            if status:
                q = q.where(CaseRow.status == status)
            return int(s.scalar(q) or 0)

    def ids(self, status: Status | None = None, limit: int = 100) -> list[str]:
        """Case ids, newest first."""
        with self.session() as s:
            q = select(CaseRow.id).order_by(CaseRow.created_at.desc()).limit(limit)
            if status:
                q = q.where(CaseRow.status == status)
            return list(s.scalars(q))

    def cases_near(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        category: str | None = None,
        statuses: Iterable[Status] | None = OPEN_STATUSES,
        *,
        exclude_id: str | None = None,
        limit: int = 50,
    ) -> list[NearbyCase]:
        """Located cases within `radius_m` of (lat, lon), nearest first (statuses=None: any)."""
        _check_point(lat, lon)
        if not (math.isfinite(radius_m) and radius_m >= 0):
            raise InvalidReport(f"radius_m must be a finite number >= 0, got {radius_m}")
        filters = [CaseRow.lat.is_not(None), CaseRow.lon.is_not(None)]
        if category is not None:
            filters.append(CaseRow.category == category)
        if statuses is not None:
            filters.append(CaseRow.status.in_(list(statuses)))
        if exclude_id is not None:
            filters.append(CaseRow.id != exclude_id)
        with self.session() as s:
            if self.dialect == "postgresql":
                q = _near_postgis(filters, lat, lon, radius_m, limit)
                found = [(r.distance_m, r) for r in s.execute(q)]
            else:
                found = []
                for r in s.execute(select(*_NEAR_COLS).where(*filters, _bbox(lat, lon, radius_m))):
                    d = haversine_m(lat, lon, r.lat, r.lon)
                    if d <= radius_m:
                        found.append((d, r))
        # One order on both backends: nearest, then oldest (the likelier original), then id.
        found.sort(key=lambda x: (x[0], aware(x[1].created_at), x[1].id))
        return [
            NearbyCase(r.id, float(d), r.status, r.category, r.lat, r.lon, aware(r.created_at))
            for d, r in found[:limit]
        ]


_NEAR_COLS = NEAR_COLS


def _to_case(row: CaseRow) -> Case:
    return Case(
        id=row.id,
        status=row.status,  # type: ignore[arg-type]
        report=Report.model_validate(row.report),
        category=row.category,
        severity=row.severity,  # type: ignore[arg-type]
        findings=[Finding.model_validate(f.data) for f in row.findings],
        place=row.place,
        lat=row.lat,
        lon=row.lon,
        routing=Routing.model_validate(row.routing) if row.routing else None,
        duplicate_of=row.duplicate_of,
        resolution=row.resolution,  # type: ignore[arg-type]
        error=row.error,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        history=[
            StatusChange(status=h.status, at=aware(h.at), by=h.by, why=h.why)  # type: ignore[arg-type]
            for h in row.history
        ],
    )

"""The case store: cases, findings, photos and status history in SQLAlchemy 2."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from pipeline.errors import CaseNotFound, StoreUnavailable
from pipeline.types import Case, Finding, Report, Routing, Status, StatusChange


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class PhotoRow(Base):
    __tablename__ = "photos"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CaseRow(Base):
    __tablename__ = "cases"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    photo_sha256: Mapped[str] = mapped_column(ForeignKey("photos.sha256"), index=True)
    report: Mapped[dict] = mapped_column(JSON)
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    severity: Mapped[str | None] = mapped_column(String(8))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    place: Mapped[dict | None] = mapped_column(JSON)
    routing: Mapped[dict | None] = mapped_column(JSON)
    duplicate_of: Mapped[str | None] = mapped_column(String(36))
    resolution: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    findings: Mapped[list[FindingRow]] = relationship(
        order_by="FindingRow.idx", cascade="all, delete-orphan"
    )
    history: Mapped[list[HistoryRow]] = relationship(
        order_by="HistoryRow.id", cascade="all, delete-orphan"
    )


class FindingRow(Base):
    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    area_m2: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict] = mapped_column(JSON)


class HistoryRow(Base):
    __tablename__ = "status_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    by: Mapped[str] = mapped_column(String(64))
    why: Mapped[str] = mapped_column(Text, default="")


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL and a busy timeout so the API and workers share one file."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class SqlCaseStore:
    """Cases in any SQLAlchemy database (SQLite by default)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        Base.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                yield s
        except OperationalError as exc:
            raise StoreUnavailable(f"case store unavailable: {exc.orig}") from exc

    def create_case(self, report: Report, size_bytes: int, *, by: str = "resident") -> str:
        """Insert a `received` case (and its photo row) in one transaction; return its id."""
        case_id = str(uuid.uuid4())
        now = utcnow()
        with self.session() as s:
            if s.get(PhotoRow, report.photo_sha256) is None:
                s.add(
                    PhotoRow(
                        sha256=report.photo_sha256,
                        content_type=report.photo_content_type,
                        size_bytes=size_bytes,
                    )
                )
                s.flush()
            row = CaseRow(
                id=case_id,
                status="received",
                photo_sha256=report.photo_sha256,
                report=report.model_dump(mode="json"),
                category=report.category,
                lat=report.lat,
                lon=report.lon,
                created_at=now,
                updated_at=now,
            )
            row.history.append(HistoryRow(status="received", at=now, by=by, why="photo uploaded"))
            s.add(row)
        return case_id

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
            row.updated_at = now
            row.history.append(HistoryRow(status=status, at=now, by=by, why=why))

    def photo_in_use(self, sha256: str) -> bool:
        """True when any case refers to this photo."""
        with self.session() as s:
            n = s.scalar(select(func.count()).where(CaseRow.photo_sha256 == sha256))
            return bool(n)

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
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
        history=[
            StatusChange(status=h.status, at=_aware(h.at), by=h.by, why=h.why)  # type: ignore[arg-type]
            for h in row.history
        ],
    )

"""The case store: cases, findings, photos and status history on SQLite or PostgreSQL + PostGIS.

One API on both: SQLite (the default, one file) and PostgreSQL + PostGIS (scale-out). The schema
comes from Alembic migrations applied when the store opens; `cases_near` finds cases around a
point with ST_DWithin on PostGIS and with a bounding box plus haversine on SQLite, measuring on
the same sphere so both answer alike.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal_column, or_, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from pipeline.db import (
    Base,
    CaseRow,
    FindingRow,
    HistoryRow,
    PhotoRow,
    make_engine,
    migrate,
    upgrade,
    utcnow,
)
from pipeline.errors import CaseNotFound, IdempotencyConflict, InvalidReport, StoreUnavailable
from pipeline.types import Case, Finding, Report, Routing, Status, StatusChange

__all__ = [
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

# PostGIS's sphere for geography with use_spheroid=false: the WGS84 mean radius (2a + b) / 3.
# Both backends measure on it, so they agree to the millimetre (the spheroid differs by <0.5%).
EARTH_RADIUS_M = 6_371_008.771415


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


def _aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes, PostgreSQL its session's zone; everything is UTC.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class SqlCaseStore:
    """Cases in SQLite (default) or PostgreSQL + PostGIS; the schema is migrated on open."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        upgrade(self.engine)

    def close(self) -> None:
        """Release the connection pool (the store can still be used; it reconnects)."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                yield s
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(f"case store unavailable: {exc.orig}") from exc

    def create_case(
        self,
        report: Report,
        size_bytes: int,
        *,
        by: str = "resident",
        idempotency_key: str | None = None,
    ) -> str:
        """Insert a `received` case (and its photo row) in one transaction; return its id.

        With an idempotency key already used, return that case's id instead (a retried
        upload); IdempotencyConflict when the key was used for another photo."""
        if idempotency_key is not None:
            existing = self._by_key(idempotency_key, report.photo_sha256)
            if existing:
                return existing
        case_id = str(uuid.uuid4())
        now = utcnow()
        try:
            self._insert_case(case_id, report, size_bytes, by, idempotency_key, now)
        except IntegrityError:
            # Two retries of one upload raced; the other one's case is the answer.
            if idempotency_key is None:
                raise
            existing = self._by_key(idempotency_key, report.photo_sha256)
            if existing is None:
                raise
            return existing
        return case_id

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

    def _insert_case(
        self,
        case_id: str,
        report: Report,
        size_bytes: int,
        by: str,
        idempotency_key: str | None,
        now: datetime,
    ) -> None:
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
                idempotency_key=idempotency_key,
            )
            row.history.append(HistoryRow(status="received", at=now, by=by, why="photo uploaded"))
            s.add(row)

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

    def release(self, case_id: str, *, by: str, why: str) -> None:
        """Hand a `processing` case back to `received` (before a retry)."""
        now = utcnow()
        with self.session() as s:
            res = s.execute(
                update(CaseRow)
                .where(CaseRow.id == case_id, CaseRow.status == "processing")
                .values(status="received", updated_at=now)
            )
            if res.rowcount == 1:
                s.add(HistoryRow(case_id=case_id, status="received", at=now, by=by, why=why))

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
        found.sort(key=lambda x: (x[0], _aware(x[1].created_at), x[1].id))
        return [
            NearbyCase(r.id, float(d), r.status, r.category, r.lat, r.lon, _aware(r.created_at))
            for d, r in found[:limit]
        ]


_NEAR_COLS = (
    CaseRow.id, CaseRow.status, CaseRow.category, CaseRow.lat, CaseRow.lon, CaseRow.created_at,
)  # fmt: skip


def _check_point(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidReport(f"({lat}, {lon}) is not a WGS84 point (lat -90..90, lon -180..180)")


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on PostGIS's sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _near_postgis(
    filters: list[Any], lat: float, lon: float, radius_m: float, limit: int = 50
) -> Any:
    # geography(geom) is the ix_cases_geog expression (`geom::geography` is that same call), so
    # ST_DWithin can use the index; use_spheroid=false measures on haversine_m's sphere.
    geog = func.geography(literal_column("cases.geom"))
    here = func.geography(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326))
    dist = func.ST_Distance(geog, here, False).label("distance_m")
    near = func.ST_DWithin(geog, here, radius_m, False)
    order = (dist, CaseRow.created_at, CaseRow.id)
    return select(*_NEAR_COLS, dist).where(*filters, near).order_by(*order).limit(limit)


def _bbox(lat: float, lon: float, radius_m: float) -> Any:
    """A (lat, lon) box that holds the whole circle: exact bounds, so the prefilter drops none."""
    d = radius_m / EARTH_RADIUS_M  # angular radius
    margin = 1e-9  # degrees (~0.1 mm): float rounding must never drop a case on the edge
    lat_lo, lat_hi = lat - math.degrees(d) - margin, lat + math.degrees(d) + margin
    in_lat = CaseRow.lat.between(lat_lo, lat_hi)
    if lat_lo <= -90 or lat_hi >= 90 or math.sin(d) >= math.cos(math.radians(lat)):
        return in_lat  # the circle holds a pole: every longitude is in reach
    dlon = math.degrees(math.asin(math.sin(d) / math.cos(math.radians(lat)))) + margin
    lo, hi = lon - dlon, lon + dlon
    if lo < -180:  # the circle crosses the antimeridian: two longitude ranges
        return and_(in_lat, or_(CaseRow.lon >= lo + 360, CaseRow.lon <= hi))
    if hi > 180:
        return and_(in_lat, or_(CaseRow.lon >= lo, CaseRow.lon <= hi - 360))
    return and_(in_lat, CaseRow.lon.between(lo, hi))


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

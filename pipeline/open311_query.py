"""Open311 GeoReport v2, reading: GET requests (filters, paging), one request, tokens, and the
status history as `servicerequestupdates`.

Answers are public: they carry no contact details (name, email, phone) and no internal fields
(who changed a status, processing errors). Datetimes are ISO 8601 in the city's time zone, with
its offset, as the spec asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pipeline.city import CityPack
from pipeline.context import Context
from pipeline.db import CaseRow, HistoryRow
from pipeline.errors import CaseNotFound, InvalidReport

CLOSED = ("closed", "rejected")
OPEN = ("received", "processing", "needs_review", "open", "in_progress", "failed")
MAX_WINDOW = timedelta(days=90)  # the spec's default window, and the widest a query may ask
MAX_PAGE_SIZE = 1000
MAX_IDS = 200
NOTES = {
    "received": "Received; waiting to be processed.",
    "processing": "The photo is being measured and located.",
    "needs_review": "Waiting for a crew to review it.",
    "open": "Confirmed; queued for a crew.",
    "in_progress": "A crew is working on it.",
    "failed": "Processing failed for now; it is retried automatically.",
    "closed": "Closed.",
    "rejected": "Not accepted as a city matter.",
}
RESOLUTIONS = {
    "fixed": "Closed: fixed.",
    "duplicate": "Closed: a duplicate of an earlier report.",
    "not_city_responsibility": "Closed: not the city's responsibility.",
    "no_action": "Closed: no action needed.",
}


def open311_status(status: str) -> str:
    """Our status as Open311's `open` or `closed`."""
    return "closed" if status in CLOSED else "open"


def city_zone(city: CityPack) -> ZoneInfo:
    """The city's time zone (city.yaml `timezone`), UTC when absent or unknown."""
    try:
        return ZoneInfo(str(city.spec.get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def w3c(dt: datetime | None, zone: ZoneInfo) -> str | None:
    """A datetime as the spec's w3c form with an offset, e.g. 2026-11-28T09:30:00-05:00."""
    if dt is None:
        return None
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    aware = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt
    return aware.astimezone(zone).isoformat(timespec="seconds")


def parse_when(name: str, raw: str | None, zone: ZoneInfo) -> datetime | None:
    """A start_date/end_date: ISO 8601; without an offset it is read in the city's zone."""
    if raw is None or not raw.strip():
        return None
    try:
        dt = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidReport(
            f"{name} must be an ISO 8601 date-time, e.g. 2026-11-28T09:30:00-05:00", field=name
        ) from None
    if not 1900 <= dt.year <= 9000:  # far years overflow once shifted by 90 days or a zone
        raise InvalidReport(f"{name} must fall in the years 1900-9000", field=name)
    return dt.replace(tzinfo=zone) if dt.tzinfo is None else dt


def _notes(row: CaseRow) -> str:
    note = RESOLUTIONS.get(row.resolution or "", NOTES.get(row.status, row.status))
    if row.status in CLOSED and row.history and row.history[-1].why:
        note = f"{note} {row.history[-1].why}"
    return note


def _address(report: dict[str, Any], place: dict[str, Any]) -> str | None:
    # On a road the nearest lot's address misleads; the street's address range says where.
    if place.get("non_lot_id") and place.get("interpolated_address"):
        return place["interpolated_address"]
    return place.get("address") or place.get("interpolated_address") or report.get("address_string")


def request_view(row: CaseRow, city: CityPack, base_url: str) -> dict[str, Any]:
    """One case as the spec's `request` element (public fields only)."""
    zone = city_zone(city)
    report, place, routing = row.report or {}, row.place or {}, row.routing or {}
    code = row.category or report.get("category") or "other"
    service = city.service(code)
    notice = None
    if routing.get("external"):
        notice = f"Maintained by {routing.get('department')}; the report was forwarded there."
    lat = row.lat if row.lat is not None else report.get("lat")
    lon = row.lon if row.lon is not None else report.get("lon")
    return {
        "service_request_id": row.id,
        "status": open311_status(row.status),
        "status_notes": _notes(row),
        "service_name": service.name if service else code,
        "service_code": code,
        "description": report.get("description") or None,
        "agency_responsible": routing.get("department"),
        "service_notice": notice,
        "requested_datetime": w3c(row.created_at, zone),
        "updated_datetime": w3c(row.updated_at, zone),
        "expected_datetime": w3c(routing.get("due_at"), zone),
        "address": _address(report, place),
        "address_id": place.get("parcel_id"),
        "zipcode": place.get("zip_code"),
        "lat": lat,
        "long": lon,
        "media_url": (
            f"{base_url}/api/v1/reports/{row.id}/photo" if row.photo_sha256 else None
        ),  # a report sent without a photo has none to show
    }


def _ids(raw: str | None) -> list[str]:
    ids = [i.strip() for i in (raw or "").split(",") if i.strip()]
    if len(ids) > MAX_IDS:
        raise InvalidReport(
            f"at most {MAX_IDS} service_request_id at once", field="service_request_id"
        )
    if any(len(i) > 64 for i in ids):
        raise InvalidReport(
            "a service_request_id is at most 64 characters", field="service_request_id"
        )
    return ids


def _int(name: str, raw: str | None, default: int, hi: int) -> int:
    if raw is None or not raw.strip():
        return default
    if not raw.strip().isdigit() or not 1 <= int(raw) <= hi:
        raise InvalidReport(f"{name} must be a whole number from 1 to {hi}", field=name)
    return int(raw)


@dataclass
class Window:
    """A checked time window and page."""

    start: datetime
    end: datetime
    page: int
    page_size: int


def window(
    zone: ZoneInfo,
    start_date: str | None,
    end_date: str | None,
    page: str | None,
    page_size: str | None,
    now: datetime | None = None,
) -> Window:
    """start/end (at most 90 days apart; default: the 90 days up to now) and the page."""
    start, end = parse_when("start_date", start_date, zone), parse_when("end_date", end_date, zone)
    now = now or datetime.now(UTC)
    if end is None:
        end = start + MAX_WINDOW if start is not None else now
    if start is None:
        start = end - MAX_WINDOW
    if start > end:
        raise InvalidReport("start_date is after end_date", field="start_date")
    if end - start > MAX_WINDOW:
        raise InvalidReport(
            "start_date and end_date may be at most 90 days apart; page through longer spans",
            field="end_date",
        )
    return Window(
        start.astimezone(UTC),
        end.astimezone(UTC),
        _int("page", page, 1, 1_000_000),
        _int("page_size", page_size, MAX_PAGE_SIZE, MAX_PAGE_SIZE),
    )


def _naive_utc(dt: datetime) -> datetime:
    # SQLite keeps naive UTC; comparing with aware values there would compare strings wrongly.
    return dt.astimezone(UTC).replace(tzinfo=None)


def _bounds(ctx: Context, column: Any, w: Window) -> list[Any]:
    if ctx.store.dialect == "sqlite":
        return [column >= _naive_utc(w.start), column <= _naive_utc(w.end)]
    return [column >= w.start, column <= w.end]


def find_requests(
    ctx: Context,
    base_url: str,
    *,
    service_request_id: str | None = None,
    service_code: str | None = None,
    status: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    page: str | None = None,
    page_size: str | None = None,
) -> list[dict[str, Any]]:
    """GET requests: by ids (which override the other filters), else by service, status and
    requested_datetime window; newest first, one page."""
    city = ctx.city
    zone = city_zone(city)
    w = window(zone, start_date, end_date, page, page_size)
    ids = _ids(service_request_id)
    q = select(CaseRow).options(selectinload(CaseRow.history))
    if ids:
        q = q.where(CaseRow.id.in_(ids))
    else:
        q = q.where(*_bounds(ctx, CaseRow.created_at, w))
        codes = [c.strip() for c in (service_code or "").split(",") if c.strip()]
        if codes:
            for c in codes:
                if city.service(c) is None:
                    raise InvalidReport(f"no service_code {c[:40]!r}", field="service_code")
            q = q.where(CaseRow.category.in_(codes))
        wanted = [s.strip().lower() for s in (status or "").split(",") if s.strip()]
        if any(s not in ("open", "closed") for s in wanted):
            raise InvalidReport(
                "status must be open, closed or both (comma-separated)", field="status"
            )
        if len(set(wanted)) == 1:
            q = q.where(CaseRow.status.in_(CLOSED if wanted[0] == "closed" else OPEN))
    q = q.order_by(CaseRow.created_at.desc(), CaseRow.id)
    q = q.offset((w.page - 1) * w.page_size).limit(w.page_size)
    with ctx.store.session() as s:
        rows = list(s.scalars(q))
        return [request_view(r, city, base_url) for r in rows]


def get_request(ctx: Context, case_id: str, base_url: str) -> dict[str, Any]:
    """GET requests/{id}: the one request, or CaseNotFound."""
    with ctx.store.session() as s:
        row = s.get(CaseRow, case_id, options=[selectinload(CaseRow.history)])
        if row is None:
            raise CaseNotFound(f"no service request with id {case_id[:64]!r}")
        return request_view(row, ctx.city, base_url)


def token(ctx: Context, token_id: str) -> dict[str, Any]:
    """GET tokens/{token}: a request's token is its id (known as soon as it is filed)."""
    with ctx.store.session() as s:
        if s.get(CaseRow, token_id) is None:
            raise CaseNotFound(f"no service request for token {token_id[:64]!r}")
    return {"service_request_id": token_id, "token": token_id}


def _public_why(h: HistoryRow) -> str:
    # Failures and retries carry exception text: internal, so the update says only its status.
    if h.status in ("failed", "processing") or (h.status == "received" and h.by == "pipeline"):
        return ""
    return h.why or ""


def updates(
    ctx: Context,
    *,
    service_request_id: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    page: str | None = None,
    page_size: str | None = None,
) -> list[dict[str, Any]]:
    """servicerequestupdates: each recorded status change in the window, oldest first."""
    zone = city_zone(ctx.city)
    w = window(zone, start_date, end_date, page, page_size)
    ids = _ids(service_request_id)
    q = select(HistoryRow).where(*_bounds(ctx, HistoryRow.at, w))
    if ids:
        q = q.where(HistoryRow.case_id.in_(ids))
    q = q.order_by(HistoryRow.at, HistoryRow.id)
    q = q.offset((w.page - 1) * w.page_size).limit(w.page_size)
    with ctx.store.session() as s:
        rows = list(s.scalars(q))
    return [
        {
            "update_id": str(h.id),
            "service_request_id": h.case_id,
            "status": open311_status(h.status),
            "updated_datetime": w3c(h.at, zone),
            "description": " — ".join(
                filter(None, (NOTES.get(h.status, h.status), _public_why(h)))
            ),
            "media_url": None,
            "external_status_code": h.status,
        }
        for h in rows
    ]

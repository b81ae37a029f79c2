"""Server-sent events: case status changes as they happen.

`GET /api/v1/events` (crew, analysts, admins): every case's changes, from now on.
`GET /api/v1/reports/{id}/events` (anyone holding the case id): that case's changes, from its
first. Each event's `id:` is its history id; a client that reconnects with `Last-Event-ID`
(the header EventSource sends, or `?last_event_id=`) gets exactly what it missed. A comment
line every `sse_heartbeat_s` keeps proxies from closing a quiet stream; a stream ends after
`sse_max_s` and the client reconnects where it left off.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.auth import public, require
from pipeline.errors import InvalidReport
from pipeline.events import Event, frontier, read_events

router = APIRouter(tags=["events"])

STAFF_ROLES = ("crew", "analyst", "admin")
RETRY_MS = 3000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream(StreamingResponse):
    """Documents the routes' answers as text/event-stream in the OpenAPI (not JSON)."""

    media_type = "text/event-stream"


LastEventId = Annotated[
    str | None, Query(description="resume after this event id (or the Last-Event-ID header)")
]


def _format(e: Event, *, public_view: bool) -> str:
    data = json.dumps(e.payload(public=public_view), separators=(",", ":"))
    return f"id: {e.id}\nevent: {e.type}\ndata: {data}\n\n"


def _resume_point(request: Request, query_value: str | None) -> int | None:
    raw = request.headers.get("last-event-id") or query_value
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidReport(
            f"Last-Event-ID must be an event id from this stream, got {raw[:40]!r}",
            field="Last-Event-ID",
        )
    return int(raw)


def _poll(ctx: Any, after: int, case_id: str | None) -> list[Event]:
    with ctx.store.session() as s:
        upto = frontier(s, ctx.settings.notify_gap_grace_s)
        return read_events(s, after, upto=upto, case_id=case_id)


def _start(ctx: Any) -> int:
    # From the frontier, not the newest id: a change committing late below it is still "now".
    with ctx.store.session() as s:
        return frontier(s, ctx.settings.notify_gap_grace_s)


async def _stream(
    request: Request, after: int, case_id: str | None, *, public_view: bool
) -> AsyncIterator[str]:
    ctx = request.app.state.ctx
    poll_s, beat_s = ctx.settings.sse_poll_s, ctx.settings.sse_heartbeat_s
    yield f"retry: {RETRY_MS}\n\n"
    last_sent = time.monotonic()
    # Streams end after sse_max_s (the client resumes from its Last-Event-ID): a server
    # shutting down, or a proxy, never waits on a stream that would otherwise never end.
    ends = last_sent + ctx.settings.sse_max_s
    while time.monotonic() < ends and not await request.is_disconnected():
        events = await run_in_threadpool(_poll, ctx, after, case_id)
        for e in events:
            yield _format(e, public_view=public_view)
            after = e.id
        if events:
            last_sent = time.monotonic()
            continue
        if time.monotonic() - last_sent >= beat_s:
            yield ": heartbeat\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(min(poll_s, beat_s))


@router.get(
    "/api/v1/events", dependencies=[Depends(require(*STAFF_ROLES))], response_class=EventStream
)
async def staff_events(request: Request, last_event_id: LastEventId = None) -> StreamingResponse:
    """Every case's status changes as a text/event-stream (from now, or after Last-Event-ID)."""
    after = _resume_point(request, last_event_id)
    if after is None:
        after = await run_in_threadpool(_start, request.app.state.ctx)
    return StreamingResponse(
        _stream(request, after, None, public_view=False),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


@router.get(
    "/api/v1/reports/{case_id}/events",
    dependencies=[Depends(public())],
    response_class=EventStream,
)
async def case_events(
    request: Request, case_id: str, last_event_id: LastEventId = None
) -> StreamingResponse:
    """One case's status changes as a text/event-stream (its whole history first)."""
    ctx = request.app.state.ctx
    await run_in_threadpool(ctx.store.status, case_id)  # 404 for an unknown case
    after = _resume_point(request, last_event_id) or 0
    return StreamingResponse(
        _stream(request, after, case_id, public_view=True),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )

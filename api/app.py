"""The FastAPI application factory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp, Receive, Scope, Send

from api import (
    accounts,
    auth,
    crew,
    errors,
    events,
    labels,
    measure,
    open311,
    ops,
    photos,
    reports,
    webhooks,
)
from pipeline import case_photos
from pipeline.context import Context
from pipeline.settings import Settings, get_settings
from pipeline.sweeper import Sweeper

# Multipart framing around one photo never needs more than this.
FORM_OVERHEAD_BYTES = 256_000
# Starlette spools an uploaded file over 1 MB to a temporary file on disk; the API reads each
# photo whole straight after (structure check, sha256), so a phone photo of a few MB was
# written to disk and read back for nothing (~0.7 ms of CPU an upload). Larger files still spool.
MultiPartParser.spool_max_size = 8 * 1024 * 1024


class _BodyLimit:
    """A pure ASGI middleware: @app.middleware("http") (BaseHTTPMiddleware) re-streams every
    request body through a task group, a third of a 1 MB upload's CPU in the API."""

    def __init__(self, app: ASGIApp, check: Callable[[Request], Response | None]) -> None:
        self.app, self.check = app, check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self.check(Request(scope))
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app over one Context; nothing connects until the first request."""
    ctx = Context(settings or get_settings())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        sweeper = None
        if ctx.settings.sweep_interval_s > 0:
            sweeper = Sweeper(ctx, ctx.settings.sweep_interval_s)
            sweeper.start()
        yield
        if sweeper is not None:
            sweeper.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="StreetLens",
        version="0.1.0",
        description="A street-problem photo in; a measured, located, routed case out.",
    )
    app.state.ctx = ctx
    errors.install(app)
    auth.install(app)

    def _limit_body(request: Request) -> Response | None:
        # Refuse an oversized upload from its header, before reading a byte of it.
        length = request.headers.get("content-length")
        limit = ctx.settings.max_upload_bytes + FORM_OVERHEAD_BYTES
        if request.url.path == "/api/v1/reports":  # a photo and up to 4 more, each checked
            limit += ctx.settings.max_upload_bytes * case_photos.MAX_EXTRA
        if length and length.isdigit() and int(length) > limit:
            if request.url.path.startswith("/open311/"):
                return open311.too_large(request, int(length), ctx.settings.max_upload_bytes)
            return JSONResponse(
                errors.error_body(
                    "photo_too_large",
                    f"the request is {length} bytes; photos may be at most "
                    f"{ctx.settings.max_upload_bytes} bytes",
                ),
                status_code=413,
            )
        return None

    app.add_middleware(_BodyLimit, check=_limit_body)

    app.include_router(reports.router)
    app.include_router(ops.router)
    app.include_router(measure.router)
    app.include_router(events.router)
    app.include_router(webhooks.router)
    app.include_router(accounts.router)
    app.include_router(crew.router)
    app.include_router(labels.router)
    app.include_router(open311.router)
    app.include_router(photos.router)
    return app

"""The FastAPI application factory."""

from __future__ import annotations

import contextlib

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api import errors, measure, ops, reports
from pipeline.context import Context
from pipeline.settings import Settings, get_settings
from pipeline.sweeper import Sweeper

# Multipart framing around one photo never needs more than this.
FORM_OVERHEAD_BYTES = 256_000


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

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        # Refuse an oversized upload from its header, before reading a byte of it.
        length = request.headers.get("content-length")
        limit = ctx.settings.max_upload_bytes + FORM_OVERHEAD_BYTES
        if length and length.isdigit() and int(length) > limit:
            return JSONResponse(
                errors.error_body(
                    "photo_too_large",
                    f"the request is {length} bytes; photos may be at most "
                    f"{ctx.settings.max_upload_bytes} bytes",
                ),
                status_code=413,
            )
        return await call_next(request)

    app.include_router(reports.router)
    app.include_router(ops.router)
    app.include_router(measure.router)
    return app

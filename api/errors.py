"""The only place errors become HTTP answers: a JSON body that says what was wrong."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.errors import (
    CaseNotFound,
    ConfigError,
    Forbidden,
    IdempotencyConflict,
    InvalidReport,
    InvalidTransition,
    InvalidWebhook,
    JurisdictionNotFound,
    LocationMissing,
    OutsideJurisdiction,
    PhotoRejected,
    PhotoTooLarge,
    RateLimited,
    ServiceNotFound,
    StoreUnavailable,
    StreetLensError,
    SubscriptionNotFound,
    Unauthorized,
)
from pipeline.observability import UPLOADS

log = logging.getLogger(__name__)

STATUS: list[tuple[type[StreetLensError], int]] = [
    (PhotoTooLarge, 413),
    (PhotoRejected, 422),
    (InvalidReport, 422),
    (LocationMissing, 422),
    (OutsideJurisdiction, 422),
    (Unauthorized, 401),
    (Forbidden, 403),
    (RateLimited, 429),
    (CaseNotFound, 404),
    (SubscriptionNotFound, 404),
    (ServiceNotFound, 404),
    (JurisdictionNotFound, 404),
    (InvalidWebhook, 422),
    (IdempotencyConflict, 409),
    (InvalidTransition, 409),
    (StoreUnavailable, 503),
    (ConfigError, 503),
]


def error_body(code: str, message: str, field: str | None = None, **extra: object) -> dict:
    """The one error shape every endpoint answers with."""
    body: dict[str, object] = {"error": code, "message": message}
    if field:
        body["field"] = field
    body.update(extra)
    return body


def install(app: FastAPI) -> None:
    """Register the handlers that turn errors into JSON answers."""

    @app.exception_handler(StreetLensError)
    async def _streetlens(request: Request, exc: StreetLensError) -> JSONResponse:
        status = next((code for cls, code in STATUS if isinstance(exc, cls)), 400)
        if status >= 500:
            log.error("service problem: %s", exc)
        if request.method == "POST":
            UPLOADS.labels(exc.code).inc()
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        elif isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": 'Bearer realm="streetlens"'}
        return JSONResponse(
            error_body(exc.code, exc.message, exc.field), status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        msg = f"{field or 'request'}: {first.get('msg')}"
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
            for e in errs[:20]
        ]
        return JSONResponse(error_body("invalid_request", msg, field or None, details=details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        message = str(exc.detail)
        # Starlette's bare "Not Found" / "Method Not Allowed" say nothing of what to do.
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint or resource: {request.url.path[:200]} (see /docs)"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"{request.method} is not allowed here; use {allowed or 'another method'}"
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=exc.headers
        )

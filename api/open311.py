"""Open311 GeoReport v2 at /open311/v2/: discovery, services, definitions, requests, tokens and
status updates, in JSON and XML (the path's suffix), with the spec's own error documents.

Thin: parse, call pipeline/open311*.py, render. Errors on these routes answer the spec's
`[{"code", "description"}]` (or <errors>) instead of the native error body: `Open311Route`
catches them for this router only, so the rest of the API keeps its own format.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import api_key_principal, public
from api.errors import STATUS
from api.forms import form_limits, read_upload
from api.open311_xml import answer, error_answer
from pipeline import open311, open311_query, tasks
from pipeline.context import Context
from pipeline.errors import Forbidden, StreetLensError, Unauthorized
from pipeline.observability import UPLOADS

log = logging.getLogger(__name__)
PREFIX = "/open311/v2"
FORMATS = ("json", "xml")


def _fmt(request: Request) -> str:
    return "xml" if request.url.path.lower().endswith(".xml") else "json"


def open311_error(request: Request, exc: Exception) -> Response | None:
    """The spec's error answer for an error raised on an Open311 route (None: not ours)."""
    if isinstance(exc, StreetLensError):
        status = next((code for cls, code in STATUS if isinstance(exc, cls)), 400)
        if isinstance(exc, Unauthorized | Forbidden):
            status = 403  # the spec's code for a missing or invalid api_key
        elif status == 422:
            status = 400  # the spec answers every bad argument with 400
        message = exc.message
        if request.method == "POST":
            UPLOADS.labels(exc.code).inc()
    elif isinstance(exc, RequestValidationError):
        first = (exc.errors() or [{"loc": (), "msg": "invalid request"}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        status, message = 400, f"{where or 'request'}: {first.get('msg')}"
    elif isinstance(exc, StarletteHTTPException):
        status, message = exc.status_code, str(exc.detail)
    else:
        return None
    if status >= 500:
        log.error("open311 service problem: %s", message)
    return error_answer(_fmt(request), status, message)


class Open311Route(APIRoute):
    """An APIRoute whose errors answer in the Open311 error format."""

    def get_route_handler(self) -> Callable:
        """The route's handler, wrapped so our errors become Open311 error documents."""
        handler = super().get_route_handler()

        async def _handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                response = open311_error(request, exc)
                if response is None:
                    raise
                return response

        return _handler


router = APIRouter(route_class=Open311Route, tags=["open311"])
PUBLIC = [Depends(public())]


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _check(request: Request, fmt: str, jurisdiction_id: str | None) -> Context:
    if fmt not in FORMATS:
        raise StarletteHTTPException(404, f"no format {fmt[:20]!r}: use .json or .xml")
    ctx = _ctx(request)
    open311.check_jurisdiction(ctx.city, jurisdiction_id)
    return ctx


Jurisdiction = Annotated[str | None, Query(description="optional: this server serves one city")]
Text = Annotated[str | None, Query()]


@router.get(f"{PREFIX}/discovery.{{fmt}}", dependencies=PUBLIC)
async def discovery(request: Request, fmt: str) -> Response:
    """Service Discovery: where this endpoint is and the formats it speaks."""
    ctx = _check(request, fmt, None)
    return answer(fmt, open311.discovery(ctx.city, _base(request) + PREFIX), "discovery")


@router.get(f"{PREFIX}/services.{{fmt}}", dependencies=PUBLIC)
async def services(request: Request, fmt: str, jurisdiction_id: Jurisdiction = None) -> Response:
    """GET Service List: what residents can report here."""
    ctx = _check(request, fmt, jurisdiction_id)
    return answer(fmt, open311.services(ctx.city), "services", "service")


@router.get(f"{PREFIX}/services/{{service_code}}.{{fmt}}", dependencies=PUBLIC)
async def service_definition(
    request: Request, service_code: str, fmt: str, jurisdiction_id: Jurisdiction = None
) -> Response:
    """GET Service Definition: the attributes a request for this service answers."""
    ctx = _check(request, fmt, jurisdiction_id)
    data = open311.service_definition(ctx.city, service_code)
    return answer(fmt, data, "service_definition")


async def _read_media(media: UploadFile | None, limit: int) -> bytes | None:
    # None: a request without a photo.
    return None if media is None else await read_upload(media, limit, "media")


FormText = Annotated[str | None, Form()]


# form_limits: a field sent twice or a flood of files is an error (tests/api/test_bad_inputs.py).
@router.post(f"{PREFIX}/requests.{{fmt}}", dependencies=[*PUBLIC, Depends(form_limits)])
async def create_request(
    request: Request,
    fmt: str,
    service_code: FormText = None,
    api_key: Annotated[str | None, Form(description="the client app's key")] = None,
    jurisdiction_id: FormText = None,
    lat: FormText = None,
    long: Annotated[str | None, Form(description="longitude (WGS84)")] = None,
    address_string: Annotated[
        str | None, Form(description="a street address, geocoded on the city's own layers")
    ] = None,
    address_id: Annotated[str | None, Form(description="a parcel id")] = None,
    email: FormText = None,
    device_id: FormText = None,
    account_id: FormText = None,
    first_name: FormText = None,
    last_name: FormText = None,
    phone: FormText = None,
    description: FormText = None,
    media_url: Annotated[str | None, Form(description="a link to a photo, never fetched")] = None,
    media: Annotated[
        UploadFile | None, File(description="the photo (multipart extension): optional")
    ] = None,
) -> Response:
    """POST Service Request: form fields as the spec names them, attribute[CODE]=VALUE for the
    service's attributes, and the photo (optional) as the multipart file field `media`."""
    ctx = _check(request, fmt, jurisdiction_id)
    who = await api_key_principal(request, api_key)
    if who.kind == "anonymous":
        # The spec: creating a request needs the client app's key (answered 403 without one).
        raise Forbidden(
            "POST requests needs your app's api_key (a form field): ask the city for one"
        )
    form = await request.form()
    req = open311.NewRequest(
        service_code=service_code,
        lat=lat,
        long=long,
        address_string=address_string,
        address_id=address_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        phone=phone,
        description=description,
        media_url=media_url,
        attributes=[
            (k, v)
            for k, v in form.multi_items()
            if k.startswith("attribute") and isinstance(v, str)
        ],
    )
    data = await _read_media(media, ctx.settings.max_upload_bytes)
    by = f"open311:{who.client}" if who.client else "open311"
    case_id = await run_in_threadpool(
        functools.partial(open311.create_request, ctx, req, data, by=by)
    )
    queued = await run_in_threadpool(tasks.enqueue, ctx, case_id)
    UPLOADS.labels("accepted").inc()
    notice = "Received; the photo is measured and located in the background."
    if data is None:
        notice = "Received; it is located and routed in the background."
    if not queued:
        notice = "Received; processing starts shortly."
    body = [
        {
            "service_request_id": case_id,
            "token": case_id,
            "service_notice": notice,
            "account_id": None,
        }
    ]
    return answer(fmt, body, "service_requests", "request")


@router.get(f"{PREFIX}/requests.{{fmt}}", dependencies=PUBLIC)
async def list_requests(
    request: Request,
    fmt: str,
    jurisdiction_id: Jurisdiction = None,
    service_request_id: Annotated[str | None, Query(description="comma-separated ids")] = None,
    service_code: Annotated[str | None, Query(description="comma-separated codes")] = None,
    start_date: Annotated[str | None, Query(description="ISO 8601; requested on or after")] = None,
    end_date: Annotated[str | None, Query(description="ISO 8601; at most 90 days on")] = None,
    status: Annotated[str | None, Query(description="open, closed, or both")] = None,
    page: Annotated[str | None, Query(description="extension: 1-based page")] = None,
    page_size: Annotated[str | None, Query(description="extension: 1-1000")] = None,
) -> Response:
    """GET Service Requests: newest first, filtered, one page."""
    ctx = _check(request, fmt, jurisdiction_id)
    data = await run_in_threadpool(
        functools.partial(
            open311_query.find_requests,
            ctx,
            _base(request),
            service_request_id=service_request_id,
            service_code=service_code,
            status=status,
            start_date=start_date,
            end_date=end_date,
            page=page,
            page_size=page_size,
        )
    )
    return answer(fmt, data, "service_requests", "request")


@router.get(f"{PREFIX}/requests/{{service_request_id}}.{{fmt}}", dependencies=PUBLIC)
async def get_request(
    request: Request, service_request_id: str, fmt: str, jurisdiction_id: Jurisdiction = None
) -> Response:
    """GET Service Request: one request (a list of one, as the spec has it)."""
    ctx = _check(request, fmt, jurisdiction_id)
    data = await run_in_threadpool(
        open311_query.get_request, ctx, service_request_id, _base(request)
    )
    return answer(fmt, [data], "service_requests", "request")


@router.get(f"{PREFIX}/tokens/{{token_id}}.{{fmt}}", dependencies=PUBLIC)
async def get_token(
    request: Request, token_id: str, fmt: str, jurisdiction_id: Jurisdiction = None
) -> Response:
    """GET request_id from a token."""
    ctx = _check(request, fmt, jurisdiction_id)
    data = await run_in_threadpool(open311_query.token, ctx, token_id)
    return answer(fmt, [data], "service_requests", "request")


@router.get(f"{PREFIX}/servicerequestupdates.{{fmt}}", dependencies=PUBLIC)
async def request_updates(
    request: Request,
    fmt: str,
    jurisdiction_id: Jurisdiction = None,
    service_request_id: Annotated[str | None, Query(description="comma-separated ids")] = None,
    start_date: Text = None,
    end_date: Text = None,
    page: Text = None,
    page_size: Text = None,
) -> Response:
    """Status history: every recorded change in the window (default: the last 90 days)."""
    ctx = _check(request, fmt, jurisdiction_id)
    data = await run_in_threadpool(
        functools.partial(
            open311_query.updates,
            ctx,
            service_request_id=service_request_id,
            start_date=start_date,
            end_date=end_date,
            page=page,
            page_size=page_size,
        )
    )
    return answer(fmt, data, "service_request_updates", "request_update")


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@router.api_route(
    "/open311/{rest:path}", methods=METHODS, include_in_schema=False, dependencies=PUBLIC
)
async def not_found(request: Request, rest: str) -> Any:
    """Anything else under /open311 answers the spec's error document, not the native one."""
    path = request.url.path
    allowed = sorted(
        {
            m
            for r in router.routes
            if isinstance(r, APIRoute) and r.name != "not_found" and r.path_regex.match(path)
            for m in r.methods
        }
    )
    if allowed:
        response = error_answer(_fmt(request), 405, f"{request.method} is not allowed here")
        response.headers["Allow"] = ", ".join(allowed)
        return response
    return error_answer(_fmt(request), 404, f"no Open311 resource at {path[:120]}")


def too_large(request: Request, length: int, limit: int) -> Response:
    """The spec's error answer for an upload refused from its Content-Length (app middleware)."""
    message = f"the request is {length} bytes; photos may be at most {limit} bytes"
    return error_answer(_fmt(request), 413, message)

"""The native JSON API for residents' reports (thin: parse, call the service, answer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from api.auth import Principal, public
from api.forms import FormSpec, read_upload
from pipeline import accounts, case_photos, intake, tasks
from pipeline.context import Context
from pipeline.observability import UPLOADS
from pipeline.types import Case

router = APIRouter()


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    return await read_upload(upload, limit, "photo")


async def _read_extra(uploads: list[UploadFile], limit: int) -> list[bytes]:
    """The extra photos' bytes: too many is refused before any is read."""
    case_photos.check_count(len(uploads))
    return [await read_upload(u, limit, case_photos.field_name(i)) for i, u in enumerate(uploads)]


def public_view(case: Case) -> dict[str, Any]:
    """A case as anyone may see it: no contact details."""
    body = case.model_dump(mode="json")
    body["report"].pop("contact_name", None)
    body["report"].pop("contact_email", None)
    body["report"].pop("contact_phone", None)
    for change in body.get("history", []):
        change["by"] = change["by"].split(":", 1)[0]  # "crew", not which crew member
    return body


REPORT_FORM = FormSpec(
    text={
        "lat": "latitude (WGS 84); or a photo with GPS in its EXIF",
        "lon": "longitude (WGS 84)",
        "heading": "compass heading of the camera, 0-360",
        "accuracy_m": "the location's accuracy in metres",
        "description": "what is wrong, in the resident's words",
        "category": "service code, e.g. pothole",
        "anonymous": "true: keep no name, email or account link",
        "name": "",
        "email": "",
        "pitch_deg": "device pitch from the phone's sensors",
        "roll_deg": "device roll",
        "camera_height_m": "camera height above the ground",
        "camera_height_sigma_m": "how sure the height is, 1 sigma in m (AR ground plane: ~0.03;"
        " default 0.2)",
        "tilt_sigma_deg": "how sure pitch and roll are, 1 sigma in degrees (default 5)",
        "idempotency_key": "or the Idempotency-Key header: a retry returns the same case",
    },
    files={
        "photo": (False, "JPEG, HEIC, PNG or WebP photo of the problem"),
        "photos": (True, "up to 4 more photos of the same problem (repeat the field)"),
    },
    required=frozenset({"photo"}),
    max_repeats={"photos": case_photos.MAX_EXTRA},
)


@router.post(
    "/api/v1/reports",
    status_code=202,
    tags=["reports"],
    # Read by hand (api/forms.FormSpec): unknown, repeated or too many fields are a 422.
    openapi_extra=REPORT_FORM.openapi(),
)
async def create_report(
    request: Request, who: Annotated[Principal, Depends(public())]
) -> dict[str, Any]:
    """Accept a photo report; it is processed in the background (poll its url)."""
    async with REPORT_FORM.read(request) as (fields, files):
        return await _accept_report(request, who, fields, files)


async def _accept_report(
    request: Request,
    who: Principal,
    fields: dict[str, str],
    files: dict[str, list[UploadFile]],
) -> dict[str, Any]:
    f = fields.get
    anonymous, name, email = f("anonymous"), f("name"), f("email")
    ctx = _ctx(request)
    if who.kind == "account" and not (anonymous or name or email):
        # A signed-in resident's report is theirs to follow, unless they ask for anonymity.
        email = await run_in_threadpool(accounts.account_email, ctx.store, who.account_id)
    data = await _read_limited(files["photo"][0], ctx.settings.max_upload_bytes)
    extra = await _read_extra(files.get("photos", []), ctx.settings.max_upload_bytes)
    form = intake.ReportForm(
        lat=f("lat"),
        lon=f("lon"),
        heading=f("heading"),
        accuracy_m=f("accuracy_m"),
        description=f("description"),
        category=f("category"),
        anonymous=anonymous,
        name=name,
        email=email,
        pitch_deg=f("pitch_deg"),
        roll_deg=f("roll_deg"),
        camera_height_m=f("camera_height_m"),
        camera_height_sigma_m=f("camera_height_sigma_m"),
        tilt_sigma_deg=f("tilt_sigma_deg"),
    )
    key = request.headers.get("idempotency-key") or f("idempotency_key")
    link = who.kind == "account" and not intake.parse_bool(
        "anonymous", anonymous, not (name or email)
    )

    def accept() -> tuple[str, bool]:
        # One trip to the threadpool for the whole blocking part of an upload.
        case_id = intake.submit(ctx, data, form, idempotency_key=key, extra_photos=extra)
        if link:
            accounts.link_report(ctx.store, case_id, who.account_id)
        return case_id, tasks.enqueue(ctx, case_id)

    case_id, queued = await run_in_threadpool(accept)
    UPLOADS.labels("accepted").inc()
    return {
        "id": case_id,
        "status": "received",
        "queued": queued,
        "url": str(request.url_for("get_report", case_id=case_id)),
    }


@router.get(
    "/api/v1/reports/{case_id}",
    tags=["reports"],
    name="get_report",
    dependencies=[Depends(public())],
)
async def get_report(request: Request, case_id: str) -> dict[str, Any]:
    """One case with its findings, place, routing and history."""
    ctx = _ctx(request)
    case = await run_in_threadpool(ctx.store.get, case_id)
    body = public_view(case)
    extras = await run_in_threadpool(case_photos.extra_photos, ctx.store, case_id)
    numbers = ([0] if case.report.photo_sha256 else []) + [row.idx for row in extras]
    body["photos"] = [
        str(request.url_for("get_report_photo", case_id=case_id, n=str(n))) for n in numbers
    ]
    return body


@router.get("/api/v1/services", tags=["reports"], dependencies=[Depends(public())])
async def list_services(request: Request) -> list[dict[str, Any]]:
    """What residents can report in this city."""
    return [
        {"code": s.code, "name": s.name, "group": s.group, "description": s.description}
        for s in _ctx(request).city.services
    ]

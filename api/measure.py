"""Self-tag and measure: a photo (or a stored case) and an outline in; a Measurement out."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from api.auth import public
from api.reports import _ctx, _read_limited
from pipeline import measuring

router = APIRouter()


@router.post("/api/v1/measure", tags=["measure"], dependencies=[Depends(public())])
async def measure(
    request: Request,
    photo: Annotated[UploadFile | None, File(description="JPEG, HEIC, PNG or WebP photo")] = None,
    case_id: Annotated[str | None, Form(description="or measure a stored report's photo")] = None,
    polygon: Annotated[
        str | None, Form(description="JSON [[x, y], ...] in full-size image pixels")
    ] = None,
    box: Annotated[
        str | None, Form(description="JSON [x0, y0, x1, y1]; refined to the outline (GrabCut)")
    ] = None,
    surface: Annotated[str | None, Form(description="ground (default) or wall")] = None,
    pitch_deg: Annotated[str | None, Form()] = None,
    roll_deg: Annotated[str | None, Form()] = None,
    camera_height_m: Annotated[str | None, Form()] = None,
    camera_height_sigma_m: Annotated[
        str | None, Form(description="how sure the height is, 1 sigma in m (default 0.2)")
    ] = None,
    tilt_sigma_deg: Annotated[
        str | None, Form(description="how sure pitch and roll are, 1 sigma in degrees (default 5)")
    ] = None,
    marker: Annotated[
        str | None, Form(description="look for the crew marker card (default true)")
    ] = None,
    scale_points: Annotated[
        str | None, Form(description="JSON [[x1, y1], [x2, y2]]: two points a known length apart")
    ] = None,
    scale_length_m: Annotated[str | None, Form(description="the length between them, m")] = None,
) -> dict[str, Any]:
    """Area, length and width in metres with an interval, by the best method the photo allows."""
    ctx = _ctx(request)
    data = await _read_limited(photo, ctx.settings.max_upload_bytes) if photo else None
    form = measuring.MeasureForm(
        case_id=case_id,
        polygon=polygon,
        box=box,
        surface=surface,
        pitch_deg=pitch_deg,
        roll_deg=roll_deg,
        camera_height_m=camera_height_m,
        camera_height_sigma_m=camera_height_sigma_m,
        tilt_sigma_deg=tilt_sigma_deg,
        marker=marker,
        scale_points=scale_points,
        scale_length_m=scale_length_m,
    )
    return await run_in_threadpool(functools.partial(measuring.measure_request, ctx, data, form))

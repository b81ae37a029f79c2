"""A case's photo: the public (blurred, metadata-free) variant for anyone; originals for crew
through expiring links only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import public, require
from pipeline import case_photos, public_media
from pipeline.context import Context

router = APIRouter()


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _public_jpeg(body: bytes, stem: str, size: str) -> Response:
    """A public (blurred, metadata-free) JPEG answer, cacheable by anyone."""
    suffix = "-thumb" if size == "thumb" else ""
    return Response(
        body,
        media_type=public_media.PUBLIC_CONTENT_TYPE,
        headers={
            "Cache-Control": "public, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="{stem}{suffix}.jpg"',
        },
    )


@router.get(
    "/api/v1/reports/{case_id}/photo",
    tags=["photos"],
    dependencies=[Depends(public())],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the public JPEG"}},
)
async def get_photo(
    request: Request,
    case_id: str,
    size: Annotated[Literal["full", "thumb"], Query(description="thumb: 320 px")] = "full",
) -> Response:
    """The case's photo with faces and plates blurred and no metadata (EXIF, GPS, device)."""
    body = await run_in_threadpool(public_media.public_photo, _ctx(request), case_id, size)
    return _public_jpeg(body, case_id, size)


@router.get(
    "/api/v1/reports/{case_id}/photos/{n}",
    tags=["photos"],
    name="get_report_photo",
    dependencies=[Depends(public())],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the public JPEG"}},
)
async def get_report_photo(
    request: Request,
    case_id: str,
    n: Annotated[int, Path(ge=0, le=case_photos.MAX_EXTRA, description="0: the first photo")],
    size: Annotated[Literal["full", "thumb"], Query(description="thumb: 320 px")] = "full",
) -> Response:
    """One of the case's photos (0-4), faces and plates blurred, no metadata (EXIF, GPS)."""
    body = await run_in_threadpool(case_photos.public_copy, _ctx(request), case_id, n, size)
    return _public_jpeg(body, f"{case_id}-{n}", size)


@router.get(
    "/api/v1/reports/{case_id}/original-link",
    tags=["photos"],
    dependencies=[Depends(require("crew", "admin", accounts_only=True))],
)
async def get_original_link(request: Request, case_id: str) -> dict[str, Any]:
    """A link to the unblurred original that expires (crew and admins only)."""
    link = await run_in_threadpool(
        public_media.original_link, _ctx(request), case_id, str(request.base_url)
    )
    return {
        "url": link.url,
        "expires_at": link.expires_at.isoformat(),
        "signed_by": link.signed_by,
    }


@router.get(
    "/api/v1/reports/{case_id}/original",
    tags=["photos"],
    # The signature in the link is the credential: crew open it in a browser or an <img>.
    dependencies=[Depends(public())],
    response_class=Response,
    responses={200: {"content": {"image/*": {}}, "description": "the original photo"}},
)
async def get_original(
    request: Request,
    case_id: str,
    expires: Annotated[int, Query(ge=0, le=2**40)],
    sig: Annotated[str, Query(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")],
) -> Response:
    """The original photo, through a link from original-link that has not expired."""
    data, content_type = await run_in_threadpool(
        public_media.open_original, _ctx(request), case_id, expires, sig
    )
    return Response(
        data,
        media_type=content_type,
        headers={
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )

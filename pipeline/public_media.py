"""Public photo variants and crew links to originals.

Anyone may see a case's photo, but only as a public variant: faces and plates blurred
(vision.privacy), re-encoded as a fresh JPEG (no EXIF, XMP or ICC: no GPS, no device), the long
side capped, plus a thumbnail. They are made while the case is processed and, for a case that
has none yet (still queued, or processed before this existed), on its first request: an
unblurred photo is never the fallback. Originals stay private; crew reach them through links
that expire: an S3 presigned URL, or on a local folder an HMAC-signed URL the app serves.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from sqlalchemy.exc import IntegrityError

from pipeline.context import Context
from pipeline.errors import CaseNotFound, Forbidden, PhotoRejected, StoreUnavailable
from pipeline.observability import stage
from pipeline.photo_variants_db import PhotoVariantRow
from pipeline.settings import Settings
from pipeline.types import Report

log = logging.getLogger(__name__)

# Bump when blurring gets better: variants of an older version are remade when next asked for.
BLUR_VERSION = 1
PUBLIC_CONTENT_TYPE = "image/jpeg"
Size = Literal["full", "thumb"]


@dataclass(frozen=True)
class Rendered:
    """A photo's public variant and thumbnail, encoded, and what was blurred."""

    public_jpeg: bytes
    public_size: tuple[int, int]  # (width, height)
    thumb_jpeg: bytes
    thumb_size: tuple[int, int]
    faces: int
    plates: int
    method: str


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """A clean JPEG of the pixels: Pillow writes no EXIF, XMP or ICC unless given them."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def render_variants(data: bytes, settings: Settings) -> Rendered:
    """Decode an original, blur its faces and plates, and encode the public copy and thumb."""
    import cv2

    from vision.errors import ImageRejected
    from vision.image import decode
    from vision.privacy import anonymize

    try:
        img = decode(
            data,
            max_pixels=settings.max_pixels,
            max_bytes=settings.max_upload_bytes,
            target_long_side=settings.public_long_side,
        )
    except ImageRejected as exc:
        raise PhotoRejected(str(exc)) from exc
    with stage("privacy"):
        blurred, regions = anonymize(img.rgb, use_mtcnn=settings.privacy_mtcnn)
    h, w = blurred.shape[:2]
    s = min(1.0, settings.thumb_long_side / max(h, w))
    tw, th = max(1, round(w * s)), max(1, round(h * s))
    thumb = cv2.resize(blurred, (tw, th), interpolation=cv2.INTER_AREA) if s < 1 else blurred
    return Rendered(
        public_jpeg=_jpeg(blurred, settings.public_jpeg_quality),
        public_size=(w, h),
        thumb_jpeg=_jpeg(thumb, settings.public_jpeg_quality),
        thumb_size=(tw, th),
        faces=len(regions.faces_xyxy),
        plates=len(regions.plates_xyxy),
        method=f"{regions.face_method}/plates:cascades+char_rows",
    )


def _names(sha256: str) -> tuple[str, str]:
    return f"{sha256}-v{BLUR_VERSION}.jpg", f"{sha256}-v{BLUR_VERSION}-thumb.jpg"


def _row(ctx: Context, sha256: str) -> PhotoVariantRow | None:
    with ctx.store.session() as s:
        return s.get(PhotoVariantRow, sha256)


def make_variants(ctx: Context, sha256: str, data: bytes | None = None) -> PhotoVariantRow:
    """Make (or remake) the public variant and thumbnail of a stored photo, and record them.

    `data`: the original's bytes when the caller has them already. Idempotent: running it twice
    (two workers, a worker and a request) stores the same copies under the same names.
    """
    if data is None:
        data = ctx.media.get(sha256)
    r = render_variants(data, ctx.settings)
    public_name, thumb_name = _names(sha256)
    # The copies before the row: a row always points at stored copies.
    ctx.media.put_public(thumb_name, r.thumb_jpeg, PUBLIC_CONTENT_TYPE)
    ctx.media.put_public(public_name, r.public_jpeg, PUBLIC_CONTENT_TYPE)
    row = PhotoVariantRow(
        photo_sha256=sha256,
        blur_version=BLUR_VERSION,
        public_name=public_name,
        public_width=r.public_size[0],
        public_height=r.public_size[1],
        public_bytes=len(r.public_jpeg),
        thumb_name=thumb_name,
        thumb_width=r.thumb_size[0],
        thumb_height=r.thumb_size[1],
        thumb_bytes=len(r.thumb_jpeg),
        faces=r.faces,
        plates=r.plates,
        method=r.method,
        created_at=datetime.now(UTC),
    )
    # IntegrityError: another process recorded the same copies first.
    with contextlib.suppress(IntegrityError), ctx.store.session() as s:
        s.merge(row)
    log.info(
        "public variants made",
        extra={"photo": sha256, "faces": r.faces, "plates": r.plates, "method": r.method},
    )
    return _row(ctx, sha256) or row


def ensure_variants(ctx: Context, sha256: str, data: bytes | None = None) -> PhotoVariantRow:
    """The photo's current public variants, made now when missing or from an older blur."""
    row = _row(ctx, sha256)
    if row is not None and row.blur_version == BLUR_VERSION:
        return row
    return make_variants(ctx, sha256, data)


def _with_photo(ctx: Context, case_id: str) -> Report:
    """The case's report; CaseNotFound (404) when the case, or its photo, does not exist."""
    report = ctx.store.get(case_id).report
    if report.photo_sha256 is None:  # an Open311 report sent without one
        raise CaseNotFound("this report has no photo", field="photo")
    return report


def public_photo(ctx: Context, case_id: str, size: Size = "full") -> bytes:
    """The public (blurred, metadata-free) JPEG of a case's photo: CaseNotFound when none."""
    sha256 = _with_photo(ctx, case_id).photo_sha256
    row = ensure_variants(ctx, sha256)
    name = row.thumb_name if size == "thumb" else row.public_name
    body = ctx.media.get_public(name)
    if body is None:  # the row outlived its copy (a wiped folder): make them again
        row = make_variants(ctx, sha256)
        body = ctx.media.get_public(row.thumb_name if size == "thumb" else row.public_name)
    if body is None:
        raise StoreUnavailable(f"the public copy of case {case_id}'s photo could not be stored")
    return body


# Crew links to originals.


def link_key(settings: Settings) -> bytes:
    """The key that signs original links: the setting, else a random one kept in home."""
    secret = settings.link_secret.get_secret_value()
    if secret:
        return secret.encode()
    path = settings.home / "link.key"
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes().strip()
        if key:
            return key
    # First use: write it whole, then link it into place, so every API process reads one key.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".link-key-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(32).encode())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_bytes().strip()


def _signature(key: bytes, case_id: str, expires: int) -> str:
    return hmac.new(key, f"original:{case_id}:{expires}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class OriginalLink:
    """Where the original can be fetched, until when."""

    url: str
    expires_at: datetime
    signed_by: Literal["s3", "app"]


def original_link(ctx: Context, case_id: str, base_url: str) -> OriginalLink:
    """An expiring link to a case's original photo (for crew): S3-presigned or app-signed."""
    sha256 = _with_photo(ctx, case_id).photo_sha256
    ttl = ctx.settings.original_link_ttl_s
    expires = int(time.time()) + ttl
    expires_at = datetime.fromtimestamp(expires, UTC)
    url = ctx.media.original_url(sha256, ttl)
    if url is not None:
        return OriginalLink(url=url, expires_at=expires_at, signed_by="s3")
    sig = _signature(link_key(ctx.settings), case_id, expires)
    path = f"/api/v1/reports/{case_id}/original?expires={expires}&sig={sig}"
    return OriginalLink(url=base_url.rstrip("/") + path, expires_at=expires_at, signed_by="app")


def open_original(ctx: Context, case_id: str, expires: int, sig: str) -> tuple[bytes, str]:
    """The original's bytes and content type, when the signed link is genuine and current."""
    good = _signature(link_key(ctx.settings), case_id, expires)
    if not hmac.compare_digest(good, sig):
        raise Forbidden("this link to the original photo is not valid; ask for a new one")
    if expires < time.time():
        raise Forbidden("this link to the original photo has expired; ask for a new one")
    report = _with_photo(ctx, case_id)
    return ctx.media.get(report.photo_sha256), report.photo_content_type

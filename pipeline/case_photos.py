"""A case's extra photos (the 2nd to 5th of one report): checked, stored and listed.

The first photo stays the case's own (`cases.photo_sha256`: detection and measuring run on it);
the others are rows of `case_photos` (migration 0007), numbered 1-4 as in
`GET /api/v1/reports/{id}/photos/{n}`, where n = 0 is the first photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy import ForeignKey, Integer, String, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.db import Base, CaseRow, PhotoRow, insert_or_keep, utcnow
from pipeline.errors import (
    CaseNotFound,
    InvalidReport,
    PhotoRejected,
    PhotoTooLarge,
    StoreUnavailable,
)
from pipeline.media import sha256_hex
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.context import Context

Size = Literal["full", "thumb"]
MAX_EXTRA = 4  # one report: the photo and up to 4 more


class CasePhotoRow(Base):
    """One extra photo of a case: its number (1-4) and which stored photo it is."""

    __tablename__ = "case_photos"
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("photos.sha256"), index=True)
    content_type: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class ExtraPhoto:
    """An extra photo that passed the checks, ready to store."""

    data: bytes
    sha256: str
    content_type: str


def field_name(i: int) -> str:
    """The form field an error names: `photos[0]` is the second photo of the report."""
    return f"photos[{i}]"


def check_count(n: int) -> None:
    """InvalidReport when a report has more extra photos than it may."""
    if n > MAX_EXTRA:
        raise InvalidReport(
            f"{n} extra photos: send at most {MAX_EXTRA} in `photos` "
            f"({MAX_EXTRA + 1} with `photo`)",
            field="photos",
        )


def check_extra(photos: list[bytes], settings: Settings) -> list[ExtraPhoto]:
    """Check every extra photo (count, size, structure) before anything is stored."""
    from pipeline.intake import CONTENT_TYPES
    from vision.errors import ImageRejected
    from vision.image import inspect

    check_count(len(photos))
    out = []
    for i, data in enumerate(photos):
        name = field_name(i)
        if not data:
            raise PhotoRejected(f"{name} is empty (0 bytes)", field=name)
        if len(data) > settings.max_upload_bytes:
            raise PhotoTooLarge(
                f"{name} is {len(data)} bytes; the limit is {settings.max_upload_bytes}",
                field=name,
            )
        try:
            img = inspect(data, max_pixels=settings.max_pixels, max_bytes=settings.max_upload_bytes)
        except ImageRejected as exc:
            raise PhotoRejected(f"{name}: {exc}", field=name) from exc
        ctype = CONTENT_TYPES.get(img.format, "application/octet-stream")
        out.append(ExtraPhoto(data=data, sha256=sha256_hex(data), content_type=ctype))
    return out


def insert_rows(conn: Connection, case_id: str, extras: list[ExtraPhoto]) -> None:
    """The extra photos' rows, inside the transaction that creates the case."""
    if not extras:
        return
    now = utcnow()
    conn.execute(
        insert_or_keep(PhotoRow.__table__),
        [{"sha256": e.sha256, "content_type": e.content_type, "size_bytes": len(e.data),
          "created_at": now} for e in extras],
    )  # fmt: skip
    conn.execute(
        insert_or_keep(CasePhotoRow.__table__),
        [{"case_id": case_id, "idx": i + 1, "sha256": e.sha256, "content_type": e.content_type}
         for i, e in enumerate(extras)],
    )  # fmt: skip


def in_use(store: object, sha256: str) -> bool:
    """True when any case refers to this photo, as its first photo or an extra one."""
    with store.session() as s:  # type: ignore[attr-defined]
        first = s.scalar(select(func.count()).where(CaseRow.photo_sha256 == sha256))
        extra = s.scalar(select(func.count()).where(CasePhotoRow.sha256 == sha256))
        return bool(first or extra)


def extra_photos(store: object, case_id: str) -> list[CasePhotoRow]:
    """A case's extra photos, in order."""
    with store.session() as s:  # type: ignore[attr-defined]
        q = select(CasePhotoRow).where(CasePhotoRow.case_id == case_id).order_by(CasePhotoRow.idx)
        return list(s.scalars(q))


def extra_sha256(store: object, case_id: str, n: int) -> str:
    """The stored photo behind `photos/{n}` (n >= 1); CaseNotFound when there is none."""
    with store.session() as s:  # type: ignore[attr-defined]
        row = s.get(CasePhotoRow, (case_id, n))
    if row is None:
        raise CaseNotFound(f"case {case_id[:40]} has no photo number {n}", field="n")
    return row.sha256


def public_copy(ctx: Context, case_id: str, n: int, size: Size = "full") -> bytes:
    """The public (blurred, metadata-free) JPEG of a case's photo number n (0: the first),
    made on its first request like the first photo's (pipeline/public_media.py)."""
    from pipeline import public_media

    if n == 0:
        return public_media.public_photo(ctx, case_id, size)
    ctx.store.get(case_id)  # CaseNotFound for a case that does not exist
    sha256 = extra_sha256(ctx.store, case_id, n)
    row = public_media.ensure_variants(ctx, sha256)
    body = ctx.media.get_public(row.thumb_name if size == "thumb" else row.public_name)
    if body is None:  # the row outlived its copy (a wiped folder): make them again
        row = public_media.make_variants(ctx, sha256)
        body = ctx.media.get_public(row.thumb_name if size == "thumb" else row.public_name)
    if body is None:
        raise StoreUnavailable(f"the public copy of case {case_id}'s photo {n} could not be stored")
    return body

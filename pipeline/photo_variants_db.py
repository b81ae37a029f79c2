"""The row of a photo's public variants (blurred, stripped copies). Migration 0005 builds it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.db import Base, utcnow


class PhotoVariantRow(Base):
    """One original photo's public copy and thumbnail: where they are and what was blurred."""

    __tablename__ = "photo_variants"
    photo_sha256: Mapped[str] = mapped_column(ForeignKey("photos.sha256"), primary_key=True)
    # Bumped when the blurring improves: older variants are remade on their next request.
    blur_version: Mapped[int] = mapped_column(Integer)
    public_name: Mapped[str] = mapped_column(String(128))
    public_width: Mapped[int] = mapped_column(Integer)
    public_height: Mapped[int] = mapped_column(Integer)
    public_bytes: Mapped[int] = mapped_column(Integer)
    thumb_name: Mapped[str] = mapped_column(String(128))
    thumb_width: Mapped[int] = mapped_column(Integer)
    thumb_height: Mapped[int] = mapped_column(Integer)
    thumb_bytes: Mapped[int] = mapped_column(Integer)
    faces: Mapped[int] = mapped_column(Integer)
    plates: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

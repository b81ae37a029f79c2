"""Crew-verified labels of case photos: the detector's training data from the city's photos.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add photo_labels: one row per label set (kept; the newest per photo counts)."""
    op.create_table(
        "photo_labels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("photo", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("width_px", sa.Integer(), nullable=False),
        sa.Column("height_px", sa.Integer(), nullable=False),
        sa.Column("objects", sa.JSON(), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["sha256"], ["photos.sha256"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_photo_labels_case_id", "photo_labels", ["case_id"])
    op.create_index("ix_photo_labels_sha256", "photo_labels", ["sha256"])


def downgrade() -> None:
    """Drop photo_labels."""
    op.drop_index("ix_photo_labels_sha256", table_name="photo_labels")
    op.drop_index("ix_photo_labels_case_id", table_name="photo_labels")
    op.drop_table("photo_labels")

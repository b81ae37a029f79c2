"""Public photo variants (owned by the privacy work): blurred, metadata-free copies.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add photo_variants: one row per original photo that has public copies."""
    op.create_table(
        "photo_variants",
        sa.Column("photo_sha256", sa.String(64), nullable=False),
        sa.Column("blur_version", sa.Integer(), nullable=False),
        sa.Column("public_name", sa.String(128), nullable=False),
        sa.Column("public_width", sa.Integer(), nullable=False),
        sa.Column("public_height", sa.Integer(), nullable=False),
        sa.Column("public_bytes", sa.Integer(), nullable=False),
        sa.Column("thumb_name", sa.String(128), nullable=False),
        sa.Column("thumb_width", sa.Integer(), nullable=False),
        sa.Column("thumb_height", sa.Integer(), nullable=False),
        sa.Column("thumb_bytes", sa.Integer(), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.Column("plates", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(160), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["photo_sha256"], ["photos.sha256"]),
        sa.PrimaryKeyConstraint("photo_sha256"),
    )


def downgrade() -> None:
    """Drop photo_variants."""
    op.drop_table("photo_variants")

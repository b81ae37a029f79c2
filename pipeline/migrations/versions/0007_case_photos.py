"""A case's extra photos (up to 4 beside its first one).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add case_photos: one row per extra photo of a case."""
    op.create_table(
        "case_photos",
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["sha256"], ["photos.sha256"]),
        sa.PrimaryKeyConstraint("case_id", "idx"),
    )
    op.create_index("ix_case_photos_sha256", "case_photos", ["sha256"])


def downgrade() -> None:
    """Drop case_photos."""
    op.drop_index("ix_case_photos_sha256", table_name="case_photos")
    op.drop_table("case_photos")

"""Idempotency keys on uploads; an index for the sweeper's stuck-case scan.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add cases.idempotency_key (unique) and an index on (status, updated_at)."""
    # A database adopted by 0001 from the rows' create_all may already have them.
    insp = sa.inspect(op.get_bind())
    if "idempotency_key" not in {c["name"] for c in insp.get_columns("cases")}:
        op.add_column("cases", sa.Column("idempotency_key", sa.String(128), nullable=True))
    op.create_index(
        "ix_cases_idempotency_key", "cases", ["idempotency_key"], unique=True, if_not_exists=True
    )
    op.create_index(
        "ix_cases_status_updated_at", "cases", ["status", "updated_at"], if_not_exists=True
    )


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_cases_status_updated_at", "cases")
    op.drop_index("ix_cases_idempotency_key", "cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("idempotency_key")

"""Ingest path: reports without a photo (Open311 clients often send none).

`cases.photo_sha256` becomes nullable. PostgreSQL drops the NOT NULL in place. SQLite cannot
ALTER a column, and batch mode's copy-and-drop of `cases` is refused while findings, history
and follows point at it (foreign keys are on, and cannot be turned off inside the migration's
transaction), so SQLite takes its own documented route for dropping a NOT NULL: edit the
table's CREATE statement in the schema and bump the schema version; the data is untouched.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_COLUMN = re.compile(r"\bphoto_sha256\s+VARCHAR\(64\)", re.IGNORECASE)
_NOT_NULL = re.compile(r"(\bphoto_sha256\s+VARCHAR\(64\))\s+NOT NULL", re.IGNORECASE)


def _sqlite_photo_nullable(nullable: bool) -> None:
    # https://www.sqlite.org/lang_altertable.html#otheralter ("removing NOT NULL constraints")
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'cases'"
    ).scalar()
    if nullable:
        new, n = _NOT_NULL.subn(r"\1", sql)
    else:
        new, n = re.subn(r"(\bphoto_sha256\s+VARCHAR\(64\))(?!\s+NOT NULL)", r"\1 NOT NULL", sql)
    if n == 0 and _NOT_NULL.search(sql) is None and nullable and _COLUMN.search(sql):
        return  # already nullable (a database made by the ORM of today, then adopted)
    if n != 1:
        raise RuntimeError(f"cases.photo_sha256 is not where 0006 expects it in: {sql}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'cases'", (new,)
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    """A case may have no photo."""
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_photo_nullable(True)
    else:
        op.alter_column("cases", "photo_sha256", existing_type=sa.String(64), nullable=True)


def downgrade() -> None:
    """Back to photo-only cases: refused while photo-less cases exist (they would be lost)."""
    bind = op.get_bind()
    n = bind.execute(sa.text("SELECT count(*) FROM cases WHERE photo_sha256 IS NULL")).scalar()
    if n:
        raise RuntimeError(
            f"{n} case(s) have no photo; downgrading below 0006 would need them deleted first"
        )
    if bind.dialect.name == "sqlite":
        _sqlite_photo_nullable(False)
    else:
        op.alter_column("cases", "photo_sha256", existing_type=sa.String(64), nullable=False)

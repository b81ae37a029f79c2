"""Accounts, roles, bearer tokens, API keys, and which account made which named report.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create accounts, auth_tokens, api_keys and report_owners."""
    # A database adopted by 0001 from the rows' create_all may already have them.
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "accounts" not in have:
        _create_tables()
    for name, table, cols, unique in INDEXES:
        op.create_index(name, table, cols, unique=unique, if_not_exists=True)


INDEXES = [
    ("ix_accounts_email", "accounts", ["email"], True),
    ("ix_auth_tokens_account_id", "auth_tokens", ["account_id"], False),
    ("ix_auth_tokens_expires_at", "auth_tokens", ["expires_at"], False),
    ("ix_api_keys_client", "api_keys", ["client"], False),
    ("ix_api_keys_key_sha256", "api_keys", ["key_sha256"], True),
    ("ix_report_owners_account_id", "report_owners", ["account_id"], False),
]


def _create_tables() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "auth_tokens",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("client", sa.String(100), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "report_owners",
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop them again."""
    op.drop_table("report_owners")
    op.drop_table("api_keys")
    op.drop_table("auth_tokens")
    op.drop_table("accounts")

"""Webhook subscriptions, notification outbox (owned by the notifications work).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

The fan-out cursor starts at the newest status change already recorded: turning
notifications on must not mail every reporter about every change in the case store's past.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the cursor, subscription, delivery and message tables; seed the cursor."""
    op.create_table(
        "notify_cursors",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("updated_at", _tz(), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(160), nullable=False),
        sa.Column("service_code", sa.String(64)),
        sa.Column("case_id", sa.String(36)),
        sa.Column("statuses", sa.JSON),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("after_event_id", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("deleted_at", _tz()),
        if_not_exists=True,
    )
    op.create_index(
        "ix_webhook_subscriptions_owner", "webhook_subscriptions", ["owner"], if_not_exists=True
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "subscription_id",
            sa.String(36),
            sa.ForeignKey("webhook_subscriptions.id"),
            nullable=False,
        ),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _tz(), nullable=False),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("log", sa.JSON, nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("finished_at", _tz()),
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_sub_event"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_webhook_deliveries_subscription_id",
        "webhook_deliveries",
        ["subscription_id"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_webhook_deliveries_state_next",
        "webhook_deliveries",
        ["state", "next_attempt_at"],
        if_not_exists=True,
    )
    op.create_table(
        "notification_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _tz(), nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("sent_at", _tz()),
        sa.UniqueConstraint("event_id", "channel", name="uq_notification_messages_event_channel"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_notification_messages_case_id",
        "notification_messages",
        ["case_id"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_notification_messages_state_next",
        "notification_messages",
        ["state", "next_attempt_at"],
        if_not_exists=True,
    )
    op.execute(
        "INSERT INTO notify_cursors (name, position, updated_at) "
        "SELECT 'fanout', COALESCE(MAX(id), 0), CURRENT_TIMESTAMP FROM status_history "
        "WHERE NOT EXISTS (SELECT 1 FROM notify_cursors WHERE name = 'fanout')"
    )


def downgrade() -> None:
    """Drop them again."""
    for name in (
        "notification_messages",
        "webhook_deliveries",
        "webhook_subscriptions",
        "notify_cursors",
    ):
        op.drop_table(name)

"""operator notifications and their preferences; events indexed by time for retention

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "notification_preferences",
        sa.Column("operator_id", sa.String(length=40), nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("site_ids", JSON, nullable=False),
        sa.Column("in_app", sa.Boolean(), nullable=False),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.Column("email_mode", sa.String(length=16), nullable=False),
        sa.Column("digest_interval_min", sa.Integer(), nullable=False),
        sa.Column("quiet_hours", JSON, nullable=True),
        sa.Column("digest_due_at", UTC_TS, nullable=True),
        sa.Column("updated_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_notification_preferences_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operator_id", name=op.f("pk_notification_preferences")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("operator_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link", sa.String(length=500), nullable=True),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("read_at", UTC_TS, nullable=True),
        sa.Column("email_state", sa.String(length=16), nullable=False),
        sa.Column("emailed_at", UTC_TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_notifications_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(
        "ix_notifications_operator_created", "notifications", ["operator_id", "created_at"]
    )
    op.create_index("ix_notifications_operator_unread", "notifications", ["operator_id", "read_at"])
    op.create_index(
        "ix_notifications_operator_email", "notifications", ["operator_id", "email_state"]
    )
    # Retention deletes the oldest activity by time.
    op.create_index("ix_events_at", "events", ["at"])
    # Notifications follow the event log from here on; history is not replayed.
    op.execute(
        "INSERT INTO system_meta (key, value) SELECT 'notification_cursor', "
        'CAST(COALESCE(MAX("offset"), 0) AS VARCHAR(32)) FROM events'
    )


def downgrade() -> None:
    op.execute("DELETE FROM system_meta WHERE key = 'notification_cursor'")
    op.drop_index("ix_events_at", table_name="events")
    op.drop_table("notifications")
    op.drop_table("notification_preferences")

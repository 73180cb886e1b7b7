"""conversation list indexes: the inbox's keyset order (created_at, id), alone and after its filters

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22

`GET /api/v1/conversations` pages newest first by `(created_at, id)`, optionally for one site
and/or one status. Each index below serves one of those combinations as a plain range scan that
stops after a page (ADR 0019). `(site_id, created_at, id)` replaces `(site_id, created_at)`, of
which it is an extension.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_conversations_created_id": ["created_at", "id"],
    "ix_conversations_site_created_id": ["site_id", "created_at", "id"],
    "ix_conversations_status_created_id": ["status", "created_at", "id"],
    "ix_conversations_site_status_created_id": ["site_id", "status", "created_at", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "conversations", columns)
    op.drop_index("ix_conversations_site_created", table_name="conversations")


def downgrade() -> None:
    op.create_index("ix_conversations_site_created", "conversations", ["site_id", "created_at"])
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="conversations")

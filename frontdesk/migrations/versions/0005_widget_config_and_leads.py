"""quick actions and offers on sites; leads

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

Columns are added with plain ALTER TABLE (no batch copy), which keeps SQLite's FTS triggers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.add_column("sites", sa.Column("quick_actions", JSON, nullable=False, server_default="[]"))
    op.add_column("sites", sa.Column("offers", JSON, nullable=False, server_default="[]"))
    op.create_table(
        "leads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("visitor_id", sa.String(length=40), nullable=False),
        sa.Column("conversation_id", sa.String(length=40), nullable=True),
        sa.Column("offer_id", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("referrer", sa.String(length=1000), nullable=True),
        sa.Column("utm", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_leads_site_id_sites"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["visitor_id"],
            ["visitors.id"],
            name=op.f("fk_leads_visitor_id_visitors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
    )
    op.create_index("ix_leads_site_created", "leads", ["site_id", "created_at"])
    op.create_index("ix_leads_visitor_offer", "leads", ["visitor_id", "offer_id"])


def downgrade() -> None:
    op.drop_table("leads")
    op.drop_column("sites", "offers")
    op.drop_column("sites", "quick_actions")

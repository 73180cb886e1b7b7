"""chunk embeddings and the per-site knowledge version

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

`knowledge_chunks.embedding` holds each chunk's vector (float16 bytes; null until computed: the
vector index embeds such chunks in memory, and re-adding a document stores them). It is added
with a plain ALTER TABLE, never a batch table copy, which on SQLite would drop the FTS triggers.
On SQLite the FTS update trigger now fires only when a chunk's heading or text changes.
`knowledge_state` holds each site's knowledge version; sites that already have documents get one.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


_FTS_UPDATE = (
    "CREATE TRIGGER knowledge_chunks_au AFTER UPDATE{columns} ON knowledge_chunks BEGIN "
    "INSERT INTO knowledge_chunks_fts(knowledge_chunks_fts, rowid, heading, text) "
    "VALUES ('delete', old.id, old.heading, old.text); "
    "INSERT INTO knowledge_chunks_fts(rowid, heading, text) "
    "VALUES (new.id, new.heading, new.text); END"
)


def _fts_update_trigger(columns: str) -> None:
    """On SQLite, re-create the trigger that keeps FTS5 in step with updated chunks."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS knowledge_chunks_au")
        op.execute(_FTS_UPDATE.format(columns=columns))


def upgrade() -> None:
    op.add_column("knowledge_chunks", sa.Column("embedding", sa.LargeBinary(), nullable=True))
    # Storing a vector must not re-index the chunk's text.
    _fts_update_trigger(" OF heading, text")
    op.create_index(
        "ix_knowledge_documents_site_checksum",
        "knowledge_documents",
        ["site_id", "checksum"],
        unique=False,
    )
    state = op.create_table(
        "knowledge_state",
        sa.Column("site_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_knowledge_state_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_knowledge_state")),
    )
    sites = op.get_bind().execute(sa.text("SELECT DISTINCT site_id FROM knowledge_documents"))
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    rows = [{"site_id": r[0], "version": secrets.token_hex(8), "changed_at": now} for r in sites]
    if rows:
        op.bulk_insert(state, rows)


def downgrade() -> None:
    _fts_update_trigger("")
    op.drop_table("knowledge_state")
    op.drop_index("ix_knowledge_documents_site_checksum", table_name="knowledge_documents")
    if op.get_bind().dialect.name == "sqlite":
        # DROP COLUMN keeps the table (and so the FTS triggers); SQLite >= 3.35 has it.
        op.execute("ALTER TABLE knowledge_chunks DROP COLUMN embedding")
    else:
        op.drop_column("knowledge_chunks", "embedding")

"""chunk embeddings and the per-site knowledge version

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

`knowledge_chunks.embedding` holds each chunk's vector (float16 bytes; null until computed: the
vector index embeds such chunks in memory, and re-adding a document stores them). It is added
with a plain ALTER TABLE, never a batch table copy, which on SQLite would drop the FTS triggers.
On SQLite the FTS5 table is rebuilt with the chunk's `site_id` as a third column, so that a
search is limited to one site inside the full-text index (the ranking then never touches another
site's rows), and its update trigger fires only when an indexed column changes.
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


def _sqlite_fts(columns: tuple[str, ...], update_of: str) -> None:
    """(Re)create the FTS5 index of knowledge chunks over `columns`, its triggers, and its data."""
    for trigger in ("knowledge_chunks_ai", "knowledge_chunks_ad", "knowledge_chunks_au"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS knowledge_chunks_fts")
    names = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    op.execute(
        f"CREATE VIRTUAL TABLE knowledge_chunks_fts USING fts5({names}, "
        "content='knowledge_chunks', content_rowid='id', "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    insert = f"INSERT INTO knowledge_chunks_fts(rowid, {names}) VALUES (new.id, {new}); "
    delete = (
        f"INSERT INTO knowledge_chunks_fts(knowledge_chunks_fts, rowid, {names}) "
        f"VALUES ('delete', old.id, {old}); "
    )
    op.execute(
        f"CREATE TRIGGER knowledge_chunks_ai AFTER INSERT ON knowledge_chunks BEGIN {insert}END"
    )
    op.execute(
        f"CREATE TRIGGER knowledge_chunks_ad AFTER DELETE ON knowledge_chunks BEGIN {delete}END"
    )
    op.execute(
        f"CREATE TRIGGER knowledge_chunks_au AFTER UPDATE{update_of} ON knowledge_chunks "
        f"BEGIN {delete}{insert}END"
    )
    op.execute("INSERT INTO knowledge_chunks_fts(knowledge_chunks_fts) VALUES ('rebuild')")


def upgrade() -> None:
    op.add_column("knowledge_chunks", sa.Column("embedding", sa.LargeBinary(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # The site is indexed too, so a search is limited to one site inside FTS5; storing a
        # vector (an update of another column) does not re-index the chunk.
        _sqlite_fts(("heading", "text", "site_id"), " OF heading, text, site_id")
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
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_fts(("heading", "text"), "")
    op.drop_table("knowledge_state")
    op.drop_index("ix_knowledge_documents_site_checksum", table_name="knowledge_documents")
    if op.get_bind().dialect.name == "sqlite":
        # DROP COLUMN keeps the table (and so the FTS triggers); SQLite >= 3.35 has it.
        op.execute("ALTER TABLE knowledge_chunks DROP COLUMN embedding")
    else:
        op.drop_column("knowledge_chunks", "embedding")

"""Migration 0004 (chunk vectors, knowledge version) on SQLite and PostgreSQL: it matches the
models, and it goes down and up again without breaking full-text search."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from frontdesk.actions.knowledge import do_index_document
from frontdesk.actions.sites import do_create_site
from frontdesk.config import Settings
from frontdesk.db import Database
from frontdesk.knowledge.ingest import parse_document
from frontdesk.migrate import alembic_config, upgrade
from frontdesk.models import Base
from frontdesk.queries.knowledge import search_passages
from frontdesk.security.keys import SecretBox

KNOWLEDGE_TABLES = {
    "knowledge_documents",
    "knowledge_chunks",
    "knowledge_state",
    "knowledge_ingestions",
}


def _knowledge_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection)
    diff = compare_metadata(context, Base.metadata)
    # The full-text index (FTS5 table, PostgreSQL tsvector column) is made by the migrations only.
    return [d for d in diff if KNOWLEDGE_TABLES & {_table_of(d)} and "search_vector" not in repr(d)]


def _table_of(diff: Any) -> str:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item[1:]:
        name = getattr(part, "name", None)
        table = getattr(part, "table", None)
        if table is not None:
            return str(table.name)
        if isinstance(part, str) and part in KNOWLEDGE_TABLES:
            return part
        if name in KNOWLEDGE_TABLES:
            return str(name)
    return ""


async def _run(db: Database, fn: Any) -> Any:
    async with db.writer.begin() as conn:
        return await conn.run_sync(fn)


async def test_the_models_match_the_migrations(settings: Settings) -> None:
    db = Database(settings)
    try:
        assert await _run(db, _knowledge_diff) == []
    finally:
        await db.dispose()


async def test_0004_goes_down_and_up(settings: Settings) -> None:
    # A database of its own, without the app: no background task holds a lock on a table the
    # downgrade drops.
    db = Database(settings)
    try:
        await _down_and_up(db)
    finally:
        await db.dispose()


async def _down_and_up(db: Database) -> None:
    async with db.session_scope() as session:
        created = await do_create_site(
            session, SecretBox(db.settings.server_key), name="Shop", origins=[]
        )

    def downgrade(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "0003")

    def columns(connection: Connection) -> tuple[set[str], set[str]]:
        inspector = inspect(connection)
        chunk_columns = {c["name"] for c in inspector.get_columns("knowledge_chunks")}
        return chunk_columns, set(inspector.get_table_names())

    await _run(db, downgrade)
    chunk_columns, tables = await _run(db, columns)
    assert "embedding" not in chunk_columns and "knowledge_state" not in tables
    await upgrade(db)
    chunk_columns, tables = await _run(db, columns)
    assert "embedding" in chunk_columns and "knowledge_state" in tables
    document = parse_document(
        "# Hours\n\nWe open at nine.",
        content_type="text/markdown",
        source="h.md",
        fallback_title="h",
    )
    async with db.session_scope() as session:
        await do_index_document(session, site_id=created.site.id, document=document)
    async with db.read_scope() as session:
        found = await search_passages(session, site_id=created.site.id, terms=["open"])
    assert [p.heading for p in found] == ["Hours"]

"""Migration 0010 (the conversation list's indexes) on SQLite and PostgreSQL: it matches the models,
goes down and up again, and each filter combination of the list pages through one index in its
order, with no sort step, bounded by the cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from frontdesk.config import Settings
from frontdesk.db import Database
from frontdesk.migrate import alembic_config, upgrade
from frontdesk.models import Base
from frontdesk.queries.conversations import conversation_list_query

AFTER = (datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC), "conv_x")
# Filters of the list → the index that must serve them (migration 0010).
EXPECTED = [
    ({}, "ix_conversations_created_id"),
    ({"site_id": "site_a"}, "ix_conversations_site_created_id"),
    ({"status": "open"}, "ix_conversations_status_created_id"),
    ({"site_id": "site_a", "status": "open"}, "ix_conversations_site_status_created_id"),
]


async def _run(db: Database, fn: Any) -> Any:
    async with db.writer.begin() as conn:
        return await conn.run_sync(fn)


def _conversation_diff(connection: Connection) -> list[Any]:
    diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return [d for d in diff if "conversations" in repr(d) and "messages" not in repr(d)]


def _indexes(connection: Connection) -> set[str]:
    return {str(ix["name"]) for ix in inspect(connection).get_indexes("conversations")}


async def test_the_model_matches_the_migrations(settings: Settings) -> None:
    db = Database(settings)
    try:
        assert await _run(db, _conversation_diff) == []
    finally:
        await db.dispose()


async def test_0010_goes_down_and_up(settings: Settings) -> None:
    db = Database(settings)
    try:

        def down(connection: Connection) -> None:
            command.downgrade(alembic_config(connection), "0009")

        await _run(db, down)
        before = await _run(db, _indexes)
        assert "ix_conversations_site_created" in before
        assert not {name for _, name in EXPECTED} & before
        await upgrade(db)
        after = await _run(db, _indexes)
        assert {name for _, name in EXPECTED} <= after
        assert "ix_conversations_site_created" not in after
    finally:
        await db.dispose()


@pytest.mark.parametrize(("filters", "index"), EXPECTED)
@pytest.mark.parametrize("with_cursor", [False, True])
async def test_each_filter_pages_through_its_index_without_sorting(
    settings: Settings, filters: dict[str, str], index: str, with_cursor: bool
) -> None:
    stmt = conversation_list_query(**filters, after=AFTER if with_cursor else None, limit=50)
    db = Database(settings)
    try:
        async with db.writer.connect() as conn:
            dialect = conn.dialect
            sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            if dialect.name == "sqlite":
                plan = "\n".join(
                    str(row[-1])
                    for row in (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")).all()
                )
                assert f"USING INDEX {index}" in plan, plan
                assert "TEMP B-TREE" not in plan, plan  # no sort step
                if with_cursor:
                    assert "(created_at,id)<(?,?)" in plan, plan  # the cursor bounds the range
            else:
                # Whatever the table's size: with sequential scans and sorts priced out, the
                # planner shows whether an index serves this filter in this order.
                await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                await conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
                await conn.exec_driver_sql("SET LOCAL enable_sort = off")
                await conn.exec_driver_sql("SET LOCAL enable_incremental_sort = off")
                plan = "\n".join(
                    str(row[0]) for row in (await conn.exec_driver_sql(f"EXPLAIN {sql}")).all()
                )
                assert f"Index Scan Backward using {index}" in plan, plan
                assert "Sort" not in plan and "Filter" not in plan, plan
                if with_cursor:  # the cursor bounds the range, it does not filter rows
                    condition = next(line for line in plan.splitlines() if "Index Cond" in line)
                    assert "ROW(created_at, (id)::text) < ROW(" in condition, plan
    finally:
        await db.dispose()

"""Cursors over the event log: what webhook and notification fan-out follow.

A cursor is a `system_meta` row holding the last offset handled. A fan-out pass first checks
cheaply, without the write lock, whether the log has moved past its cursor (most wake-ups find
nothing); then, inside its unit of work, takes the cursor (locked on PostgreSQL, so passes in
several processes never handle the same events) and the next events after it. Moving the cursor
in that same transaction is what makes each event handled exactly once.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.db import Database
from frontdesk.models import EventRecord, SystemMeta


async def log_moved_past(db: Database, key: str) -> bool:
    """Whether events exist after the cursor `key` (read-only; no lock taken)."""
    async with db.read_scope() as session:
        value = await session.scalar(select(SystemMeta.value).where(SystemMeta.key == key))
        head = await session.scalar(select(func.max(EventRecord.offset)))
    return value is not None and head is not None and int(head) > int(value)


async def take_next_events(
    session: AsyncSession, key: str, limit: int
) -> tuple[SystemMeta, list[EventRecord]] | None:
    """The cursor row (locked on PostgreSQL) and up to `limit` events after it, in offset order;
    None when there is no such cursor or nothing after it. Set `cursor.value` to the last offset
    handled before the unit of work commits."""
    stmt = select(SystemMeta).where(SystemMeta.key == key)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    cursor = (await session.execute(stmt)).scalar_one_or_none()
    if cursor is None:
        return None
    events = list(
        (
            await session.execute(
                select(EventRecord)
                .where(EventRecord.offset > int(cursor.value))
                .order_by(EventRecord.offset)
                .limit(limit)
            )
        ).scalars()
    )
    return (cursor, events) if events else None

"""Reading the persisted event log: the epoch, the head offset, and ranges for recovery."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.models import EventRecord, SystemMeta


async def event_epoch(session: AsyncSession) -> str:
    row = await session.get(SystemMeta, "event_epoch")
    return row.value if row is not None else "unknown"


async def offset_bounds(session: AsyncSession) -> tuple[int, int]:
    """(smallest, largest) offset kept; (0, 0) when the log is empty."""
    low, high = (
        await session.execute(select(func.min(EventRecord.offset), func.max(EventRecord.offset)))
    ).one()
    return int(low or 0), int(high or 0)


async def events_between(
    session: AsyncSession, after: int, up_to: int | None, *, limit: int
) -> list[EventRecord]:
    stmt = select(EventRecord).where(EventRecord.offset > after).order_by(EventRecord.offset)
    if up_to is not None:
        stmt = stmt.where(EventRecord.offset <= up_to)
    return list((await session.execute(stmt.limit(limit))).scalars())

"""Cursors over the event log: what webhook and notification fan-out follow.

A cursor is a `system_meta` row holding the last offset handled. The worker first checks
cheaply, in one read without the write lock, which cursors the log has moved past (most wake-ups
find nothing). A fan-out then, inside its unit of work, takes its cursor (locked on PostgreSQL,
so passes in several processes never handle the same events) with the log's head, and either the
next events after it or, when nobody can be interested in them (no webhook endpoint, no
operator), moves straight to the head. Moving the cursor in that same transaction is what makes
each event handled exactly once.

Under chat load the log moves on every turn while, most often, nobody listens: no webhook
endpoint, no operator. `skip_unwatched` moves every such cursor to the head in one statement,
which checks in the same statement that the fan-out still has nobody to hand events to; only
cursors with someone listening go on to a fan-out's unit of work. (Two ORM units of work a pass
only to move two cursors cost about 4 ms of the loop, 20 times a second.)

Events are read in two steps: their heads (offset, id, type, site, actor, time) first, the whole
row (its JSON data) only for the events a fan-out actually turns into something. Under chat load
most events are `message.created` that no one subscribed to, and decoding their data was most of
a pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Select, String, and_, cast, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.db import Database
from frontdesk.models import EventRecord, SystemMeta


async def cursors_behind(db: Database, keys: Iterable[str]) -> frozenset[str]:
    """The cursors among `keys` that events exist after (one read; no lock taken)."""
    head = select(func.max(EventRecord.offset)).scalar_subquery()
    stmt = select(SystemMeta.key).where(
        SystemMeta.key.in_(list(keys)), cast(SystemMeta.value, BigInteger) < head
    )
    async with db.connect(db.reader) as conn:
        return frozenset((await conn.execute(stmt)).scalars())


async def skip_unwatched(db: Database, watchers: Mapping[str, Select[Any]]) -> frozenset[str]:
    """Move to the log's head each cursor whose fan-out has nobody to hand events to (its
    `watchers` query finds no row), in one statement; returns the keys moved. A watcher that
    appears later starts at the head it saw, so it misses nothing. A cursor only moves forward:
    another process may have moved it further meanwhile."""
    if not watchers:
        return frozenset()
    head = select(func.max(EventRecord.offset)).scalar_subquery()
    unwatched = or_(*(and_(SystemMeta.key == key, ~exists(q)) for key, q in watchers.items()))
    stmt = (
        update(SystemMeta)
        .where(unwatched, cast(SystemMeta.value, BigInteger) < head)
        .values(value=cast(head, String))
        .returning(SystemMeta.key)
    )
    async with db.connect(db.writer) as conn, conn.begin():
        return frozenset((await conn.execute(stmt)).scalars())


@dataclass(frozen=True, slots=True)
class EventHead:
    """What a fan-out decides on without reading an event's data."""

    offset: int
    id: str
    type: str
    site_id: str | None
    actor: str | None
    at: datetime


@dataclass(slots=True)
class Taken:
    """A cursor taken in a unit of work: set `value` to the last offset handled before the
    unit of work commits (or call `skip_to_head`)."""

    cursor: SystemMeta
    head: int

    @property
    def position(self) -> int:
        return int(self.cursor.value)

    def skip_to_head(self) -> int:
        """Nobody is interested in the events up to the head: pass them all. Returns how many
        offsets were passed."""
        passed = self.head - self.position
        self.cursor.value = str(self.head)
        return passed


async def take_cursor(session: AsyncSession, key: str) -> Taken | None:
    """The cursor row (locked on PostgreSQL) and the log's head read after it, or None when
    there is no such cursor or nothing after it."""
    stmt = select(SystemMeta).where(SystemMeta.key == key)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    cursor = (await session.execute(stmt)).scalar_one_or_none()
    if cursor is None:
        return None
    # The head is read after the lock: what a concurrent pass committed is behind the cursor.
    head = (await session.execute(select(func.max(EventRecord.offset)))).scalar()
    if head is None or int(head) <= int(cursor.value):
        return None
    return Taken(cursor, int(head))


async def next_event_heads(session: AsyncSession, taken: Taken, limit: int) -> list[EventHead]:
    """Up to `limit` events after the cursor, in offset order, without their data."""
    columns = (
        EventRecord.offset,
        EventRecord.id,
        EventRecord.type,
        EventRecord.site_id,
        EventRecord.actor,
        EventRecord.at,
    )
    stmt = (
        select(*columns)
        .where(EventRecord.offset > taken.position, EventRecord.offset <= taken.head)
        .order_by(EventRecord.offset)
        .limit(limit)
    )
    return [EventHead(*row) for row in (await session.execute(stmt)).all()]


async def load_events(session: AsyncSession, offsets: Sequence[int]) -> dict[int, EventRecord]:
    """The whole events (their data included) at these offsets."""
    if not offsets:
        return {}
    stmt = select(EventRecord).where(EventRecord.offset.in_(list(offsets)))
    return {event.offset: event for event in (await session.execute(stmt)).scalars()}

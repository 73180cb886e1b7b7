"""Recording events inside a unit of work.

Only actions call `record_event`. The event is queued on the session; `Database.session_scope`
writes the queue in the same transaction just before committing, and publishes it after the
commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.db import PENDING_EVENTS
from frontdesk.events.types import EVENT_TYPES
from frontdesk.ids import new_id
from frontdesk.models import EventRecord, utcnow


def new_event(
    type_: str,
    *,
    site_id: str | None,
    data: dict[str, Any],
    actor: str | None = None,
    at: datetime | None = None,
) -> EventRecord:
    """An event not yet written (no offset)."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    return EventRecord(
        id=new_id("evt"), type=type_, at=at or utcnow(), site_id=site_id, actor=actor, data=data
    )


def record_event(
    session: AsyncSession,
    type_: str,
    *,
    site_id: str | None,
    data: dict[str, Any],
    actor: str | None = None,
) -> EventRecord:
    return queue_event(session, new_event(type_, site_id=site_id, data=data, actor=actor))


def queue_event(session: AsyncSession, record: EventRecord) -> EventRecord:
    # Inserted by the unit of work just before commit (see Database._write_events).
    pending = session.info.get(PENDING_EVENTS)
    if pending is None:
        raise RuntimeError("record_event needs a session from Database.session_scope()")
    pending.append(record)
    return record

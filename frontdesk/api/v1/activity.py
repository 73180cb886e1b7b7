"""The activity feed (`/api/v1/activity`) and single events (`/api/v1/events/{id}`).

Every event is activity: who (actor), what (type), on what (data), where (site), when. The feed
is newest first with cursor pagination and filters; a webhook whose payload was too large to
inline points at `/api/v1/events/{id}`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Reader
from frontdesk.api.v1.params import TimeParam, parse_time
from frontdesk.errors import invalid_request, not_found
from frontdesk.models import EventRecord

router = APIRouter(tags=["activity"])


class Activity(BaseModel):
    offset: int
    id: str
    type: str
    at: str
    site_id: str | None
    actor: str | None
    data: dict[str, Any]


class ActivityPage(BaseModel):
    activity: list[Activity]
    next_cursor: str | None


def activity_out(row: EventRecord) -> Activity:
    return Activity(
        offset=row.offset,
        id=row.id,
        type=row.type,
        at=row.at.isoformat(),
        site_id=row.site_id,
        actor=row.actor,
        data=row.data,
    )


@router.get("/activity", response_model=ActivityPage, summary="The activity feed")
async def activity(
    principal: Reader,
    services: ServicesDep,
    type: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.*]+$")] = None,
    actor: Annotated[str | None, Query(max_length=80)] = None,
    site_id: Annotated[str | None, Query(max_length=40)] = None,
    since: TimeParam = None,
    until: TimeParam = None,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ActivityPage:
    """`type` may end in `.*` (e.g. `message.*`)."""
    stmt = select(EventRecord).order_by(EventRecord.offset.desc()).limit(limit + 1)
    if type:
        if type.endswith(".*"):
            stmt = stmt.where(EventRecord.type.startswith(type[:-1]))
        else:
            stmt = stmt.where(EventRecord.type == type)
    if actor:
        stmt = stmt.where(EventRecord.actor == actor)
    site = principal.site_id or site_id
    if site_id and principal.site_id and site_id != principal.site_id:
        return ActivityPage(activity=[], next_cursor=None)
    if site:
        stmt = stmt.where(EventRecord.site_id == site)
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if start is not None:
        stmt = stmt.where(EventRecord.at >= start)
    if end is not None:
        stmt = stmt.where(EventRecord.at < end)
    if cursor:
        if not cursor.isdigit():
            raise invalid_request("cursor is invalid.")
        stmt = stmt.where(EventRecord.offset < int(cursor))
    async with services.db.read_scope() as session:
        rows = list((await session.execute(stmt)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return ActivityPage(
        activity=[activity_out(r) for r in rows],
        next_cursor=str(rows[-1].offset) if more and rows else None,
    )


@router.get("/events/{event_id}", response_model=Activity, summary="One event")
async def event(event_id: str, principal: Reader, services: ServicesDep) -> Activity:
    async with services.db.read_scope() as session:
        row = (
            await session.execute(select(EventRecord).where(EventRecord.id == event_id))
        ).scalar_one_or_none()
    if row is None or not principal.may_see_site(row.site_id):
        raise not_found("No such event.")
    return activity_out(row)

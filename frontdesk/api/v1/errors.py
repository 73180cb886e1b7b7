"""Error groups (`/api/v1/errors`): widget error reports and server errors, grouped by
fingerprint and counted; the dashboard's error list.

Reading them needs the `read` permission, like the metrics whose `errors` count they explain.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Reader
from frontdesk.api.v1.params import TimeParam, parse_time
from frontdesk.errors import not_found
from frontdesk.models import ErrorGroup
from frontdesk.queries.errors import ErrorFilter, access_error_group, list_error_groups

router = APIRouter(prefix="/errors", tags=["errors"])


class ErrorGroupOut(BaseModel):
    id: str
    fingerprint: str
    source: Literal["widget", "server"]
    site_id: str | None
    kind: str
    message: str
    count: int
    first_seen: str
    last_seen: str
    sample: dict[str, Any]


class ErrorGroupPage(BaseModel):
    items: list[ErrorGroupOut]
    next_cursor: str | None


def error_group_out(row: ErrorGroup) -> ErrorGroupOut:
    return ErrorGroupOut(
        id=row.id,
        fingerprint=row.fingerprint,
        source=row.source,
        site_id=row.site_id,
        kind=row.kind,
        message=row.message,
        count=row.count,
        first_seen=row.first_seen.isoformat(),
        last_seen=row.last_seen.isoformat(),
        sample=row.last_sample,
    )


@router.get("", response_model=ErrorGroupPage, summary="List error groups")
async def list_errors(
    principal: Reader,
    services: ServicesDep,
    site_id: Annotated[str | None, Query(max_length=40)] = None,
    source: Annotated[Literal["widget", "server"] | None, Query()] = None,
    since: TimeParam = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ErrorGroupPage:
    """Most recently seen first; `since` keeps groups seen at or after that time; `cursor` comes
    from the previous page's `next_cursor`."""
    where = ErrorFilter(site_id=site_id, source=source, since=parse_time(since, "since"))
    async with services.db.read_scope() as session:
        rows, next_cursor = await list_error_groups(
            session, principal, where, cursor=cursor, limit=limit
        )
    return ErrorGroupPage(items=[error_group_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/{group_id}", response_model=ErrorGroupOut, summary="One error group")
async def error_detail(group_id: str, principal: Reader, services: ServicesDep) -> ErrorGroupOut:
    async with services.db.read_scope() as session:
        row = await access_error_group(session, principal, group_id)
    if row is None:
        raise not_found("No such error group.")
    return error_group_out(row)

"""Reading error groups: the newest first, filtered and cursor-paginated, and one by id.

Visibility follows the caller: a principal limited to one site sees that site's widget errors
and never the server's (which belong to no site).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.errors import invalid_request
from frontdesk.models import ErrorGroup
from frontdesk.security.principals import Principal


@dataclass(frozen=True, slots=True)
class ErrorFilter:
    site_id: str | None = None
    source: str | None = None
    since: datetime | None = None


def encode_cursor(row: ErrorGroup) -> str:
    return base64.urlsafe_b64encode(f"{row.last_seen.isoformat()}|{row.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, sep, group_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        when = datetime.fromisoformat(at)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request("cursor is invalid.") from exc
    if not sep or not group_id or when.tzinfo is None:
        raise invalid_request("cursor is invalid.")
    return when, group_id


async def list_error_groups(
    session: AsyncSession,
    principal: Principal,
    where: ErrorFilter,
    *,
    cursor: str | None,
    limit: int,
) -> tuple[list[ErrorGroup], str | None]:
    """A page of groups, most recently seen first, and the cursor of the next page."""
    if where.site_id and principal.site_id and where.site_id != principal.site_id:
        return [], None
    stmt = (
        select(ErrorGroup)
        .order_by(ErrorGroup.last_seen.desc(), ErrorGroup.id.desc())
        .limit(limit + 1)
    )
    site = principal.site_id or where.site_id
    if site:
        stmt = stmt.where(ErrorGroup.site_id == site)
    if where.source:
        stmt = stmt.where(ErrorGroup.source == where.source)
    if where.since is not None:
        stmt = stmt.where(ErrorGroup.last_seen >= where.since)
    if cursor:
        at, group_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                ErrorGroup.last_seen < at,
                and_(ErrorGroup.last_seen == at, ErrorGroup.id < group_id),
            )
        )
    rows = list((await session.execute(stmt)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None


async def access_error_group(
    session: AsyncSession, principal: Principal, group_id: str
) -> ErrorGroup | None:
    row = await session.get(ErrorGroup, group_id) if len(group_id) <= 40 else None
    if row is None or not principal.may_see_site(row.site_id):
        return None
    return row

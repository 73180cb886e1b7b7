"""An operator's notifications (`/api/v1/notifications`): the list with unread counts, marking as
read, and the operator's preferences. Notifications belong to a person, so these routes are for
signed-in operators, not API keys. Marking as read is also pushed to the operator's other open
dashboards through their `/ws/events` connections.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Reader
from frontdesk.errors import forbidden, invalid_request
from frontdesk.models import Notification, NotificationPreference, utcnow
from frontdesk.notifications.fanout import notification_public, operator_channel
from frontdesk.notifications.preferences import Preferences
from frontdesk.security.principals import Principal

router = APIRouter(prefix="/notifications", tags=["notifications"])

CURSOR = re.compile(r"^(\d{1,20})\.([a-z]+_[0-9a-z]{1,40})$")


class NotificationOut(BaseModel):
    id: str
    kind: str = Field(description="The event type that caused it.")
    event_id: str
    site_id: str | None
    title: str
    body: str
    link: str | None
    at: str
    read: bool
    email: str = Field(description="none, pending, digest, sent or skipped.")


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    unread: int
    next_cursor: str | None


class MarkRead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=500)
    all: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> MarkRead:
        if not self.ids and not self.all:
            raise ValueError("give ids or all: true")
        return self


class Unread(BaseModel):
    unread: int


class PreferencesOut(Preferences):
    email_available: bool = Field(
        description="Whether this server can send email (an SMTP server is configured)."
    )


def operator_id(principal: Principal) -> str:
    if principal.kind != "operator":
        raise forbidden("Notifications belong to operators: sign in to the dashboard.")
    return principal.id


def _cursor_of(note: Notification) -> str:
    return f"{int(note.created_at.timestamp() * 1_000_000)}.{note.id}"


async def unread_count(session: AsyncSession, operator: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.operator_id == operator, Notification.read_at.is_(None))
    )
    return int(count or 0)


@router.get("", response_model=NotificationPage, summary="My notifications, newest first")
async def list_notifications(
    principal: Reader,
    services: ServicesDep,
    unread: bool = False,
    cursor: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> NotificationPage:
    operator = operator_id(principal)
    stmt = (
        select(Notification)
        .where(Notification.operator_id == operator)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit + 1)
    )
    if unread:
        stmt = stmt.where(Notification.read_at.is_(None))
    if cursor:
        match = CURSOR.match(cursor)
        if match is None:
            raise invalid_request("cursor is invalid.")
        at = datetime.fromtimestamp(int(match.group(1)) / 1_000_000, UTC)
        stmt = stmt.where(
            or_(
                Notification.created_at < at,
                and_(Notification.created_at == at, Notification.id < match.group(2)),
            )
        )
    async with services.db.read_scope() as session:
        rows = list((await session.execute(stmt)).scalars())
        count = await unread_count(session, operator)
    more = len(rows) > limit
    rows = rows[:limit]
    return NotificationPage(
        items=[NotificationOut(**notification_public(r)) for r in rows],
        unread=count,
        next_cursor=_cursor_of(rows[-1]) if more and rows else None,
    )


@router.post("/read", response_model=Unread, summary="Mark notifications as read")
async def mark_read(body: MarkRead, principal: Reader, services: ServicesDep) -> Unread:
    operator = operator_id(principal)
    stmt = (
        update(Notification)
        .where(Notification.operator_id == operator, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    if not body.all:
        stmt = stmt.where(Notification.id.in_(body.ids))
    async with services.db.session_scope() as session:
        await session.execute(stmt)
    async with services.db.read_scope() as session:
        count = await unread_count(session, operator)
    frame: dict[str, Any] = {"type": "notifications_read", "unread": count}
    frame.update({"all": True} if body.all else {"ids": body.ids})
    # Stored already; another tab that misses this catches up on its next fetch.
    with contextlib.suppress(Exception):
        await services.broker.publish(operator_channel(operator), orjson.dumps(frame))
    return Unread(unread=count)


def _out(prefs: Preferences, services: ServicesDep) -> PreferencesOut:
    return PreferencesOut(**prefs.model_dump(), email_available=bool(services.settings.smtp_host))


@router.get("/preferences", response_model=PreferencesOut, summary="My notification preferences")
async def get_preferences(principal: Reader, services: ServicesDep) -> PreferencesOut:
    operator = operator_id(principal)
    async with services.db.read_scope() as session:
        row = await session.get(NotificationPreference, operator)
    return _out(Preferences.of(row), services)


@router.put(
    "/preferences", response_model=PreferencesOut, summary="Set my notification preferences"
)
async def put_preferences(
    body: Preferences, principal: Reader, services: ServicesDep
) -> PreferencesOut:
    operator = operator_id(principal)
    async with services.db.session_scope() as session:
        row = await session.get(NotificationPreference, operator)
        if row is None:
            row = NotificationPreference(operator_id=operator, digest_due_at=None)
            session.add(row)
        body.apply_to(row)
        row.updated_at = utcnow()
    return _out(body, services)

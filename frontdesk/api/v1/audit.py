"""The audit log (`/api/v1/audit`): admin actions, newest first, with cursor pagination."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Admin
from frontdesk.api.v1.schemas import AuditOut, AuditPage
from frontdesk.errors import invalid_request
from frontdesk.models import AuditEntry

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPage, summary="Read the audit log")
async def read_audit(
    principal: Admin,
    services: ServicesDep,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditPage:
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if cursor is not None:
        if not cursor.isdigit():
            raise invalid_request("cursor is invalid.")
        stmt = stmt.where(AuditEntry.id < int(cursor))
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if principal.site_id:
        stmt = stmt.where(AuditEntry.site_id == principal.site_id)
    async with services.db.read_scope() as session:
        rows = list((await session.execute(stmt)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        entries=[
            AuditOut(
                id=r.id,
                at=r.at.isoformat(),
                actor_kind=r.actor_kind,
                actor_id=r.actor_id,
                action=r.action,
                target=r.target,
                site_id=r.site_id,
                ip=r.ip,
                data=r.data,
            )
            for r in rows
        ],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )

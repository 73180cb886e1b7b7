"""The audit log: who changed what, when, from where. Written by admin actions only."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.models import AuditEntry, utcnow
from frontdesk.security.principals import Principal


def record_audit(
    session: AsyncSession,
    actor: Principal | None,
    action: str,
    *,
    target: str | None = None,
    site_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            at=utcnow(),
            actor_kind=actor.kind if actor else "system",
            actor_id=actor.id if actor else None,
            action=action,
            target=target,
            site_id=site_id,
            ip=actor.ip if actor else None,
            data=data or {},
        )
    )

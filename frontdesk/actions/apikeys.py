"""API keys: created with scopes, shown once, stored as a hash."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.audit import record_audit
from frontdesk.errors import invalid_request
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.models import API_KEY_SCOPES, ApiKey, utcnow
from frontdesk.security.apikeys import new_api_key
from frontdesk.security.principals import Principal


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str


def check_scopes(scopes: list[str]) -> list[str]:
    cleaned = sorted({s for s in scopes if s})
    unknown = [s for s in cleaned if s not in API_KEY_SCOPES]
    if not cleaned or unknown:
        raise invalid_request(f"scopes must be among {', '.join(API_KEY_SCOPES)}.")
    return cleaned


async def do_create_api_key(
    session: AsyncSession,
    *,
    scopes: list[str],
    name: str = "",
    site_id: str | None = None,
    actor: Principal | None = None,
) -> CreatedApiKey:
    key, prefix, key_hash = new_api_key()
    row = ApiKey(
        id=new_id("key"),
        name=name[:200],
        prefix=prefix,
        key_hash=key_hash,
        scopes=check_scopes(scopes),
        site_id=site_id,
    )
    session.add(row)
    record_audit(session, actor, "api_key.created", target=row.id, site_id=site_id)
    record_event(
        session,
        "api_key.created",
        site_id=site_id,
        data={"api_key_id": row.id, "prefix": prefix, "scopes": row.scopes},
    )
    return CreatedApiKey(api_key=row, key=key)


async def do_revoke_api_key(session: AsyncSession, row: ApiKey, *, actor: Principal | None) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record_audit(session, actor, "api_key.revoked", target=row.id, site_id=row.site_id)
        record_event(session, "api_key.revoked", site_id=row.site_id, data={"api_key_id": row.id})

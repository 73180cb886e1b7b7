"""API keys (`/api/v1/api-keys`): create (shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from frontdesk.actions.apikeys import do_create_api_key, do_revoke_api_key
from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Admin
from frontdesk.api.v1.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyOut
from frontdesk.errors import forbidden, not_found
from frontdesk.models import ApiKey
from frontdesk.queries.sites import get_site

router = APIRouter(prefix="/api-keys", tags=["api keys"])


def key_out(row: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=list(row.scopes),
        site_id=row.site_id,
        created_at=row.created_at.isoformat(),
        last_used_at=row.last_used_at.isoformat() if row.last_used_at else None,
        revoked_at=row.revoked_at.isoformat() if row.revoked_at else None,
    )


@router.get("", response_model=ApiKeyList, summary="List API keys")
async def list_keys(principal: Admin, services: ServicesDep) -> ApiKeyList:
    async with services.db.read_scope() as session:
        stmt = select(ApiKey).order_by(ApiKey.created_at)
        if principal.site_id:
            stmt = stmt.where(ApiKey.site_id == principal.site_id)
        rows = (await session.execute(stmt)).scalars().all()
    return ApiKeyList(api_keys=[key_out(r) for r in rows])


@router.post("", status_code=201, response_model=ApiKeyCreated, summary="Create an API key")
async def create_key(body: ApiKeyCreate, principal: Admin, services: ServicesDep) -> ApiKeyCreated:
    """Create a key with scopes; the key itself is in this response only."""
    if principal.site_id and body.site_id != principal.site_id:
        raise forbidden("A key limited to one site can only create keys for that site.")
    async with services.db.session_scope() as session:
        if body.site_id:
            await get_site(session, body.site_id)
        created = await do_create_api_key(
            session,
            scopes=list(body.scopes),
            name=body.name,
            site_id=body.site_id,
            actor=principal,
        )
    return ApiKeyCreated(**key_out(created.api_key).model_dump(), key=created.key)


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key")
async def revoke_key(key_id: str, principal: Admin, services: ServicesDep) -> Response:
    async with services.db.session_scope() as session:
        row = await session.get(ApiKey, key_id) if len(key_id) <= 40 else None
        if row is None or not principal.may_see_site(row.site_id):
            raise not_found("No such API key.")
        await do_revoke_api_key(session, row, actor=principal)
    return Response(status_code=204)

"""Inbound channels (`/api/v1/channels`): create (the secret is shown once), list, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from sqlalchemy import delete, select

from frontdesk.actions.channels import do_create_channel
from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Admin
from frontdesk.errors import not_found
from frontdesk.models import Channel, WebhookEndpoint
from frontdesk.queries.sites import get_site, site_not_found

router = APIRouter(prefix="/channels", tags=["channels"])


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: StrictStr = Field(max_length=40)
    name: StrictStr = Field(min_length=1, max_length=200)
    callback_url: StrictStr = Field(max_length=2000)


class ChannelOut(BaseModel):
    id: str
    site_id: str
    name: str
    callback_url: str
    inbound_url: str
    created_at: str


class ChannelCreated(ChannelOut):
    secret: str = Field(description="`whsec_…`, shown once; signs both directions.")


class ChannelList(BaseModel):
    channels: list[ChannelOut]


def channel_out(row: Channel, public_url: str) -> ChannelOut:
    return ChannelOut(
        id=row.id,
        site_id=row.site_id,
        name=row.name,
        callback_url=row.callback_url,
        inbound_url=f"{public_url}/api/channels/{row.id}/messages",
        created_at=row.created_at.isoformat(),
    )


@router.post("", status_code=201, response_model=ChannelCreated, summary="Add a channel")
async def create_channel(
    body: ChannelCreate, principal: Admin, services: ServicesDep
) -> ChannelCreated:
    if not principal.may_see_site(body.site_id):
        raise site_not_found()
    async with services.db.session_scope() as session:
        await get_site(session, body.site_id)
        created = await do_create_channel(
            session,
            services.box,
            site_id=body.site_id,
            name=body.name,
            callback_url=body.callback_url,
            actor=principal,
        )
    out = channel_out(created.channel, services.settings.public_url)
    return ChannelCreated(**out.model_dump(), secret=created.secret)


@router.get("", response_model=ChannelList, summary="List channels")
async def list_channels(principal: Admin, services: ServicesDep) -> ChannelList:
    async with services.db.read_scope() as session:
        stmt = select(Channel).order_by(Channel.created_at)
        if principal.site_id:
            stmt = stmt.where(Channel.site_id == principal.site_id)
        rows = (await session.execute(stmt)).scalars().all()
    return ChannelList(channels=[channel_out(r, services.settings.public_url) for r in rows])


@router.delete("/{channel_id}", status_code=204, summary="Remove a channel")
async def delete_channel(channel_id: str, principal: Admin, services: ServicesDep) -> Response:
    async with services.db.session_scope() as session:
        row = await session.get(Channel, channel_id) if len(channel_id) <= 40 else None
        if row is None or not principal.may_see_site(row.site_id):
            raise not_found("No such channel.")
        await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == row.endpoint_id))
        await session.delete(row)
    return Response(status_code=204)

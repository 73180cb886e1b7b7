"""Inbound channels: creating them, and taking in their signed messages.

A channel message names the sender by the external system's user id; that user becomes a verified
visitor of the channel's site (the channel's signature vouches for them), their open conversation
on that channel is continued or a new one started, and the message is stored once: the request's
`webhook-id` is both the receipt key and the message's `client_id`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.audit import record_audit
from frontdesk.actions.conversations import do_start_conversation
from frontdesk.actions.messages import StoredMessage, do_create_message
from frontdesk.actions.webhooks import check_url
from frontdesk.ids import new_id
from frontdesk.models import (
    Channel,
    Conversation,
    EventRecord,
    InboundReceipt,
    Visitor,
    WebhookEndpoint,
    utcnow,
)
from frontdesk.security.keys import SecretBox
from frontdesk.security.principals import Principal
from frontdesk.webhooks.signing import new_secret


@dataclass(frozen=True, slots=True)
class CreatedChannel:
    channel: Channel
    secret: str


async def do_create_channel(
    session: AsyncSession,
    box: SecretBox,
    *,
    site_id: str,
    name: str,
    callback_url: str,
    actor: Principal | None,
) -> CreatedChannel:
    secret = new_secret()
    sealed = box.seal(secret)
    head = (await session.execute(select(func.max(EventRecord.offset)))).scalar()
    channel_id = new_id("chn")
    endpoint = WebhookEndpoint(
        id=new_id("ep"),
        site_id=site_id,
        url=check_url(callback_url),
        events=["message.created"],
        description=f"replies of channel {channel_id}",
        secret_sealed=sealed,
        status="active",
        from_offset=int(head or 0),
        channel_id=channel_id,
        created_at=utcnow(),
    )
    channel = Channel(
        id=channel_id,
        site_id=site_id,
        name=name.strip()[:200] or "channel",
        secret_sealed=sealed,
        callback_url=endpoint.url,
        endpoint_id=endpoint.id,
        created_at=utcnow(),
    )
    session.add_all([endpoint, channel])
    record_audit(session, actor, "channel.created", target=channel.id, site_id=site_id)
    return CreatedChannel(channel, secret)


@dataclass(frozen=True, slots=True)
class Inbound:
    conversation: Conversation
    message_id: str
    seq: int
    duplicate: bool
    stored: StoredMessage | None


async def _visitor(session: AsyncSession, channel: Channel, external_user_id: str) -> Visitor:
    key = f"{channel.id}:{external_user_id}"
    stmt = select(Visitor).where(
        Visitor.site_id == channel.site_id, Visitor.external_user_id == key
    )
    visitor = (await session.execute(stmt)).scalar_one_or_none()
    if visitor is None:
        visitor = Visitor(
            id=new_id("vis"), site_id=channel.site_id, external_user_id=key, verified=True
        )
        session.add(visitor)
        await session.flush()
    return visitor


async def do_receive_channel_message(
    session: AsyncSession,
    channel: Channel,
    *,
    webhook_id: str,
    external_user_id: str,
    text: str,
) -> Inbound:
    earlier = (
        await session.execute(
            select(InboundReceipt).where(
                InboundReceipt.channel_id == channel.id, InboundReceipt.webhook_id == webhook_id
            )
        )
    ).scalar_one_or_none()
    if earlier is not None:
        conversation = await session.get(Conversation, earlier.conversation_id)
        assert conversation is not None
        return Inbound(conversation, earlier.message_id, 0, True, None)
    visitor = await _visitor(session, channel, external_user_id)
    channel_name = channel.id  # conversations.channel: "widget" or the channel id
    conversation = (
        await session.execute(
            select(Conversation)
            .where(
                Conversation.visitor_id == visitor.id,
                Conversation.channel == channel_name,
                Conversation.status == "open",
            )
            .order_by(Conversation.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if conversation is None:
        conversation = await do_start_conversation(
            session, site_id=channel.site_id, visitor_id=visitor.id, channel=channel_name
        )
        await session.flush()
    stored = await do_create_message(
        session,
        conversation_id=conversation.id,
        role="visitor",
        text=text,
        client_id=webhook_id[:64],
    )
    session.add(
        InboundReceipt(
            channel_id=channel.id,
            webhook_id=webhook_id,
            conversation_id=conversation.id,
            message_id=stored.message.id,
        )
    )
    return Inbound(conversation, stored.message.id, stored.message.seq, False, stored)

"""Starting conversations."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.models import Conversation, utcnow


async def do_start_conversation(
    session: AsyncSession, *, site_id: str, visitor_id: str, channel: str = "widget"
) -> Conversation:
    now = utcnow()
    conversation = Conversation(
        id=new_id("conv"),
        site_id=site_id,
        visitor_id=visitor_id,
        channel=channel,
        status="open",
        handler="bot",
        last_seq=0,
        created_at=now,
        updated_at=now,
    )
    session.add(conversation)
    record_event(
        session,
        "conversation.started",
        site_id=site_id,
        data={"conversation_id": conversation.id, "visitor_id": visitor_id, "channel": channel},
    )
    return conversation

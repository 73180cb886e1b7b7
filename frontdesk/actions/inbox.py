"""What operators do to conversations: take over from the bot, reply, hand back, close.

Closing records `conversation.closed` with the whole transcript, which is what CRM webhooks want
at the end of a chat.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.audit import record_audit
from frontdesk.actions.messages import StoredMessage, do_create_message
from frontdesk.errors import AppError
from frontdesk.events.recorder import record_event
from frontdesk.models import Conversation, Message, message_public, utcnow
from frontdesk.security.principals import Principal


def _require_open(conversation: Conversation) -> None:
    if conversation.status != "open":
        raise AppError("conflict", "The conversation is closed.", 409)


def do_take_over(session: AsyncSession, conversation: Conversation, actor: Principal) -> None:
    _require_open(conversation)
    conversation.handler = "operator"
    conversation.assigned_operator_id = actor.id
    conversation.updated_at = utcnow()
    record_event(
        session,
        "operator.joined",
        site_id=conversation.site_id,
        data={"conversation_id": conversation.id, "operator_id": actor.id},
        actor=actor.id,
    )


def do_hand_back(session: AsyncSession, conversation: Conversation, actor: Principal) -> None:
    _require_open(conversation)
    conversation.handler = "bot"
    conversation.assigned_operator_id = None
    conversation.updated_at = utcnow()
    record_audit(session, actor, "conversation.handed_back", target=conversation.id)


async def do_operator_reply(
    session: AsyncSession, conversation: Conversation, actor: Principal, text: str, client_id: str
) -> StoredMessage:
    _require_open(conversation)
    if conversation.handler != "operator":
        do_take_over(session, conversation, actor)
    return await do_create_message(
        session,
        conversation_id=conversation.id,
        role="operator",
        text=text,
        client_id=client_id,
        meta={"operator_id": actor.id},
    )


async def do_close(session: AsyncSession, conversation: Conversation, actor: Principal) -> None:
    _require_open(conversation)
    conversation.status = "closed"
    conversation.updated_at = utcnow()
    rows = (
        await session.execute(
            select(Message).where(Message.conversation_id == conversation.id).order_by(Message.seq)
        )
    ).scalars()
    transcript: list[dict[str, Any]] = [
        {k: v for k, v in message_public(m).items() if k in ("seq", "role", "text", "created_at")}
        for m in rows
    ]
    record_event(
        session,
        "conversation.closed",
        site_id=conversation.site_id,
        data={
            "conversation_id": conversation.id,
            "visitor_id": conversation.visitor_id,
            "channel": conversation.channel,
            "closed_by": actor.id,
            "transcript": transcript,
        },
        actor=actor.id,
    )

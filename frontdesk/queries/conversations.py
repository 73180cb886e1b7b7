"""Reading conversations and messages, with visitor-level access checks."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.errors import not_found
from frontdesk.models import Conversation, Message
from frontdesk.security.tokens import VisitorClaims


async def access_conversation(
    session: AsyncSession, visitor: VisitorClaims, conversation_id: str
) -> Conversation:
    """The visitor's own conversation, or `not_found` (never revealing that it exists)."""
    conversation = (
        await session.get(Conversation, conversation_id) if len(conversation_id) <= 40 else None
    )
    if (
        conversation is None
        or conversation.visitor_id != visitor.visitor_id
        or conversation.site_id != visitor.site_id
    ):
        raise not_found("No such conversation.")
    return conversation


async def list_visitor_conversations(
    session: AsyncSession, visitor: VisitorClaims, limit: int = 50
) -> list[Conversation]:
    stmt = (
        select(Conversation)
        .where(
            Conversation.visitor_id == visitor.visitor_id, Conversation.site_id == visitor.site_id
        )
        .order_by(Conversation.created_at.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def list_messages(
    session: AsyncSession, conversation_id: str, *, after_seq: int, limit: int
) -> tuple[list[Message], bool]:
    stmt = (
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.seq > after_seq)
        .order_by(Message.seq)
        .limit(limit + 1)
    )
    rows = list((await session.execute(stmt)).scalars())
    return rows[:limit], len(rows) > limit


async def recent_messages(session: AsyncSession, conversation_id: str, limit: int) -> list[Message]:
    stmt = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.seq.desc())
        .limit(limit)
    )
    return list(reversed(list((await session.execute(stmt)).scalars())))


async def find_reply(session: AsyncSession, message_id: str) -> Message | None:
    stmt = select(Message).where(Message.reply_to_id == message_id).order_by(Message.seq).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()

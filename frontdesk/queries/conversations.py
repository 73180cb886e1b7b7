"""Reading conversations and messages: visitor-level access checks, the inbox's list query, and
pages of a conversation's messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from frontdesk.errors import not_found
from frontdesk.models import Conversation, Message
from frontdesk.security.tokens import VisitorClaims


async def access_conversation(
    session: AsyncSession, visitor: VisitorClaims, conversation_id: str, *, lock: bool = False
) -> Conversation:
    """The visitor's own conversation, or `not_found` (never revealing that it exists). With
    `lock`, the row is locked for this transaction (a message is about to be added)."""
    conversation = (
        await session.get(Conversation, conversation_id, with_for_update=lock)
        if len(conversation_id) <= 40
        else None
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


PREVIEW_CHARS = 200


def conversation_list_query(
    *,
    site_id: str | None = None,
    status: str | None = None,
    handler: str | None = None,
    q: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int,
) -> Select[Any]:
    """One page of the inbox's list, newest first by `(created_at, id)`, after the keyset `after`
    (the last row of the previous page), with `limit + 1` rows to tell whether more follow.

    The id breaks ties between conversations started in the same microsecond, so no row is skipped
    or repeated across pages. Unfiltered, by site, by status, or by both, the order and the
    keyset are a range scan of one index of migration 0010 that stops after the page (ADR 0019);
    `handler` and `q` filter that scan.

    Each row has the conversation's columns and its last message's (`last_role`, `last_text` cut
    to `PREVIEW_CHARS`, `last_created_at`; None when there is none): the message whose `seq` is
    the conversation's `last_seq`, one lookup in the unique `(conversation_id, seq)` index per row,
    in the same query.
    """
    last = aliased(Message, name="last_message")
    stmt = (
        select(
            *Conversation.__table__.columns,
            last.role.label("last_role"),
            func.substr(last.text, 1, PREVIEW_CHARS).label("last_text"),
            last.created_at.label("last_created_at"),
        )
        .select_from(Conversation)
        .outerjoin(
            last,
            and_(last.conversation_id == Conversation.id, last.seq == Conversation.last_seq),
        )
        .order_by(Conversation.created_at.desc(), Conversation.id.desc())
        .limit(limit + 1)
    )
    if site_id:
        stmt = stmt.where(Conversation.site_id == site_id)
    if status:
        stmt = stmt.where(Conversation.status == status)
    if handler:
        stmt = stmt.where(Conversation.handler == handler)
    if q:
        containing = select(Message.conversation_id).where(
            Message.text.icontains(q, autoescape=True)
        )
        stmt = stmt.where(
            or_(
                Conversation.id == q,
                Conversation.visitor_id == q,
                Conversation.id.in_(containing),
            )
        )
    if after is not None:
        # A row-value comparison: both databases use it as the bound of the index range scan.
        stmt = stmt.where(tuple_(Conversation.created_at, Conversation.id) < after)
    return stmt


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


async def conversation_heads(session: AsyncSession, conversation_ids: list[str]) -> dict[str, int]:
    """The last `seq` stored in each of these conversations (missing ones are left out)."""
    stmt = select(Conversation.id, Conversation.last_seq).where(
        Conversation.id.in_(conversation_ids)
    )
    return {row.id: row.last_seq for row in await session.execute(stmt)}

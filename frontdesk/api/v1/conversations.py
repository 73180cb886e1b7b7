"""Conversations (`/api/v1/conversations`): the inbox's list (filters, text search, the last
message of each) and detail, and operator actions: take over, reply as operator (the visitor sees
it live), hand back to the bot, close."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from frontdesk.actions.inbox import do_close, do_hand_back, do_operator_reply, do_take_over
from frontdesk.actions.messages import check_client_id, check_message_text
from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Reader, Writer
from frontdesk.errors import invalid_request, not_found
from frontdesk.models import Conversation, message_public
from frontdesk.queries.conversations import conversation_list_query, list_messages
from frontdesk.security.principals import Principal
from frontdesk.services import Services

router = APIRouter(prefix="/conversations", tags=["conversations"])


class ConversationOut(BaseModel):
    id: str
    site_id: str
    visitor_id: str
    status: str
    channel: str
    handler: str
    assigned_operator_id: str | None
    last_seq: int
    created_at: str
    last_message_at: str | None


class MessagePreview(BaseModel):
    seq: int
    role: str
    text: str = Field(description="The start of the message (at most 200 characters).")
    created_at: str


class ConversationItem(ConversationOut):
    last_message: MessagePreview | None


class ConversationPage(BaseModel):
    conversations: list[ConversationItem]
    next_cursor: str | None


class ConversationDetail(ConversationOut):
    messages: list[dict[str, Any]]
    has_more_messages: bool = Field(
        description="More messages follow: ask again with `after_seq` = the last one's `seq`."
    )


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(max_length=100_000)
    client_id: StrictStr = Field(min_length=1, max_length=64)


def _fields(row: Any) -> dict[str, Any]:
    """`ConversationOut`'s fields from a `Conversation` or a list row (same attribute names)."""
    return {
        "id": row.id,
        "site_id": row.site_id,
        "visitor_id": row.visitor_id,
        "status": row.status,
        "channel": row.channel,
        "handler": row.handler,
        "assigned_operator_id": row.assigned_operator_id,
        "last_seq": row.last_seq,
        "created_at": row.created_at.isoformat(),
        "last_message_at": row.last_message_at.isoformat() if row.last_message_at else None,
    }


def conversation_out(row: Conversation) -> ConversationOut:
    return ConversationOut(**_fields(row))


def _item(row: Any) -> ConversationItem:
    """A row of `conversation_list_query`: the conversation and its last message."""
    last = None
    if row.last_role is not None:
        last = MessagePreview(
            seq=row.last_seq,
            role=row.last_role,
            text=row.last_text,
            created_at=row.last_created_at.isoformat(),
        )
    return ConversationItem(**_fields(row), last_message=last)


def _encode_cursor(row: Any) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, _, conversation_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or not conversation_id:
            raise ValueError("a cursor has a time zone and an id")
        moment = moment.astimezone(UTC)  # overflows at the ends of the calendar
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise invalid_request("cursor is invalid.") from exc
    return moment, conversation_id


@router.get("", response_model=ConversationPage, summary="List conversations")
async def list_conversations(
    principal: Reader,
    services: ServicesDep,
    site_id: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    handler: Annotated[str | None, Query(pattern="^(bot|operator)$")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ConversationPage:
    """Newest first; `cursor` comes from the previous page's `next_cursor`. `q` finds the
    conversations with a message containing it (case-insensitive), or with that exact
    conversation or visitor id."""
    if site_id and principal.site_id and site_id != principal.site_id:
        return ConversationPage(conversations=[], next_cursor=None)
    stmt = conversation_list_query(
        site_id=principal.site_id or site_id,
        status=status,
        handler=handler,
        q=q,
        after=_decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    async with services.db.read_scope() as session:
        rows = list((await session.execute(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return ConversationPage(
        conversations=[_item(r) for r in rows],
        next_cursor=_encode_cursor(rows[-1]) if more and rows else None,
    )


async def _load(session: Any, principal: Principal, conversation_id: str) -> Conversation:
    row = await session.get(Conversation, conversation_id) if len(conversation_id) <= 40 else None
    if row is None or not principal.may_see_site(row.site_id):
        raise not_found("No such conversation.")
    assert isinstance(row, Conversation)
    return row


@router.get("/{conversation_id}", response_model=ConversationDetail, summary="One conversation")
async def conversation_detail(
    conversation_id: str,
    principal: Reader,
    services: ServicesDep,
    after_seq: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> ConversationDetail:
    """The conversation and its messages in `seq` order: at most `limit` of them after
    `after_seq`, so that a conversation of thousands of messages is read a page at a time."""
    async with services.db.read_scope() as session:
        row = await _load(session, principal, conversation_id)
        messages, more = await list_messages(session, row.id, after_seq=after_seq, limit=limit)
        shown = [message_public(m) for m in messages]
    return ConversationDetail(
        **conversation_out(row).model_dump(), messages=shown, has_more_messages=more
    )


async def _act(
    services: Services, principal: Principal, conversation_id: str, action: Any
) -> ConversationOut:
    async with services.db.session_scope() as session:
        row = await _load(session, principal, conversation_id)
        result = action(session, row, principal)
        if hasattr(result, "__await__"):
            await result
        return conversation_out(row)


@router.post("/{conversation_id}/takeover", response_model=ConversationOut, summary="Take over")
async def take_over(
    conversation_id: str, principal: Writer, services: ServicesDep
) -> ConversationOut:
    """The bot stops answering; the operator answers."""
    return await _act(services, principal, conversation_id, do_take_over)


@router.post("/{conversation_id}/handback", response_model=ConversationOut, summary="Hand back")
async def hand_back(
    conversation_id: str, principal: Writer, services: ServicesDep
) -> ConversationOut:
    return await _act(services, principal, conversation_id, do_hand_back)


@router.post("/{conversation_id}/close", response_model=ConversationOut, summary="Close")
async def close(conversation_id: str, principal: Writer, services: ServicesDep) -> ConversationOut:
    """Records `conversation.closed` with the transcript."""
    return await _act(services, principal, conversation_id, do_close)


@router.post("/{conversation_id}/messages", status_code=201, summary="Reply as an operator")
async def reply(
    conversation_id: str, body: Reply, principal: Writer, services: ServicesDep
) -> dict[str, Any]:
    """Takes the conversation over if the bot had it; idempotent by `client_id`."""
    text = check_message_text(body.text, max_chars=services.settings.max_message_chars)
    client_id = check_client_id(body.client_id)
    async with services.db.session_scope() as session:
        row = await _load(session, principal, conversation_id)
        stored = await do_operator_reply(session, row, principal, text, client_id)
        return {"message": message_public(stored.message)}

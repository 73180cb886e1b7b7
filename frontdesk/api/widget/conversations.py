"""Conversations and messages of the current visitor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from frontdesk.actions.conversations import do_start_conversation
from frontdesk.api.deps import ServicesDep, VisitorSite, WidgetVisitor, request_ip
from frontdesk.api.sse import sse_response, wants_event_stream
from frontdesk.api.widget.schemas import (
    ConversationCreated,
    ConversationList,
    ConversationSummary,
    MessageAccepted,
    MessageCreate,
    MessagePage,
)
from frontdesk.chat import accept_visitor_message
from frontdesk.models import Message, message_public
from frontdesk.queries.conversations import (
    access_conversation,
    find_reply,
    list_messages,
    list_visitor_conversations,
)
from frontdesk.services import Services
from frontdesk.turns import Turn

router = APIRouter(prefix="/conversations", tags=["widget"])


@router.post(
    "", status_code=201, response_model=ConversationCreated, summary="Start a conversation"
)
async def create_conversation(visitor: WidgetVisitor, services: ServicesDep) -> ConversationCreated:
    async with services.db.session_scope() as session:
        conversation = await do_start_conversation(
            session, site_id=visitor.site_id, visitor_id=visitor.visitor_id
        )
    return ConversationCreated(id=conversation.id, created_at=conversation.created_at.isoformat())


@router.get("", response_model=ConversationList, summary="The visitor's conversations")
async def get_conversations(visitor: WidgetVisitor, services: ServicesDep) -> ConversationList:
    async with services.db.read_scope() as session:
        rows = await list_visitor_conversations(session, visitor)
    return ConversationList(
        conversations=[
            ConversationSummary(
                id=c.id,
                status=c.status,
                created_at=c.created_at.isoformat(),
                last_message_at=c.last_message_at.isoformat() if c.last_message_at else None,
                last_seq=c.last_seq,
            )
            for c in rows
        ]
    )


@router.get(
    "/{conversation_id}/messages", response_model=MessagePage, summary="Messages after a seq"
)
async def get_messages(
    conversation_id: str,
    visitor: WidgetVisitor,
    services: ServicesDep,
    after_seq: Annotated[int, Query(ge=0, le=2**31)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    async with services.db.read_scope() as session:
        await access_conversation(session, visitor, conversation_id)
        messages, has_more = await list_messages(
            session, conversation_id, after_seq=after_seq, limit=limit
        )
    return JSONResponse({"messages": [message_public(m) for m in messages], "has_more": has_more})


async def _frames(
    services: Services, message: Message, turn: Turn | None
) -> AsyncIterator[list[dict[str, Any]]]:
    """The answer stream's frames, in batches: the stored message at once (the first byte the
    visitor waits for), then the turn's frames as they become ready."""
    yield [{"type": "message", "message": message_public(message)}]
    if turn is not None:
        async for batch in turn.follow_batches():
            yield batch
        return
    # A repeat of a message whose answer is already stored (or not answered by the bot).
    async with services.db.read_scope() as session:
        reply = await find_reply(session, message.id)
    tail: list[dict[str, Any]] = []
    if reply is not None:
        tail.append({"type": "message", "message": message_public(reply)})
    tail.append(
        {
            "type": "message_end",
            "conversation_id": message.conversation_id,
            "message_id": reply.id if reply else None,
            "reply_to": message.id,
        }
    )
    yield tail


@router.post(
    "/{conversation_id}/messages",
    status_code=202,
    response_model=MessageAccepted,
    summary="Send a message",
    responses={200: {"content": {"text/event-stream": {}}, "description": "The answer stream."}},
)
async def post_message(
    conversation_id: str,
    body: MessageCreate,
    request: Request,
    visitor: WidgetVisitor,
    site: VisitorSite,
    services: ServicesDep,
) -> Response:
    """Store the visitor's message once (idempotent by `client_id`) and start the answer.

    With `Accept: text/event-stream` the response streams the stored message, the answer's
    `delta`s, the final `message` and `message_end` as SSE events.
    """
    accepted = await accept_visitor_message(
        services,
        site,
        visitor,
        conversation_id=conversation_id,
        client_id=body.client_id,
        text=body.text,
        ip=request_ip(request, services),
    )
    stored, turn = accepted.stored, accepted.turn
    if wants_event_stream(request.headers.get("accept")):
        return sse_response(_frames(services, stored.message, turn))
    return JSONResponse({"message": message_public(stored.message)}, status_code=202)

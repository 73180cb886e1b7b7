"""The fallback transport: a conversation's live frames over SSE, for networks that block
WebSockets. Messages are sent with `POST …/messages`; this stream delivers what `/ws/chat` would
(`joined`, `message`, `delta`, `typing`) with the same resume rule: `after_seq` or the
`Last-Event-ID` header (the last `seq` seen), then everything after it, in order, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from frontdesk.api.deps import ServicesDep, WidgetVisitor
from frontdesk.api.sse import SSE_HEADERS, sse_frame
from frontdesk.queries.conversations import access_conversation
from frontdesk.realtime.feed import ConversationFeed
from frontdesk.realtime.outbox import Outbox
from frontdesk.services import Services

router = APIRouter(prefix="/conversations", tags=["widget"])
KEEPALIVE_S = 15.0


async def _stream(services: Services, conversation_id: str, after_seq: int) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def write(text: str) -> None:
        await queue.put(sse_frame(orjson.loads(text)))

    outbox = Outbox(
        write,
        max_bytes=services.settings.ws_send_queue_bytes,
        flush_ms=services.settings.ws_delta_flush_ms,
    )
    feed = ConversationFeed(conversation_id, outbox, after_seq)
    try:
        messages, has_more = await services.hub.follow(feed)
        outbox.send(
            {
                "type": "joined",
                "conversation_id": conversation_id,
                "messages": messages,
                "has_more": has_more,
                "last_seq": feed.last_seq,
            }
        )
        services.hub.go_live(feed, has_more)
        while not outbox.overflowed:
            try:
                yield await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
    finally:
        await services.hub.unfollow(feed)
        await outbox.stop()
        with contextlib.suppress(Exception):
            queue.put_nowait(b"")


@router.get(
    "/{conversation_id}/stream",
    summary="Live frames over SSE (fallback transport)",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_conversation(
    conversation_id: str,
    visitor: WidgetVisitor,
    services: ServicesDep,
    after_seq: Annotated[int | None, Query(ge=0, le=2**31)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Stream the conversation: `joined` (the messages after `after_seq`, or after the
    `Last-Event-ID` a reconnecting EventSource sends), then live `message`, `delta` and `typing`
    events. Each `message` event's id is its `seq`."""
    async with services.db.read_scope() as session:
        await access_conversation(session, visitor, conversation_id)
    start = after_seq
    if start is None:
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    return StreamingResponse(
        _stream(services, conversation_id, start),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )

"""Server-sent events framing for answer streams, and the response that carries one answer.

`sse_response` writes each batch of frames as one chunk, straight to the ASGI `send`: an answer
stream is bounded by the turn, so it needs neither Starlette's `StreamingResponse` task group
(a second task and a cancel scope per response, only to notice a disconnect) nor one write per
frame when several are ready together (a cached answer's delta, message and end).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def sse_frame(frame: dict[str, Any]) -> bytes:
    """One SSE event named after the frame's type, with the frame as its data; a persisted
    message carries its `seq` as the event id, so `Last-Event-ID` resumes after it."""
    head = b"event: " + str(frame["type"]).encode() + b"\n"
    if frame.get("type") == "message" and isinstance(frame.get("message"), dict):
        head += b"id: " + str(frame["message"].get("seq", "")).encode() + b"\n"
    return head + b"data: " + orjson.dumps(frame) + b"\n\n"


class AnswerStream(Response):
    """A `text/event-stream` response of frame batches, each written as one chunk. A visitor who
    goes away stops nothing: the turn is bounded and its answer is stored anyway, and the server
    drops what is written to a closed connection."""

    media_type = "text/event-stream"

    def __init__(self, batches: AsyncIterator[list[dict[str, Any]]]) -> None:
        # As StreamingResponse does: no body attribute, so no Content-Length is declared.
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.batches = batches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async for batch in self.batches:
            body = b"".join(sse_frame(frame) for frame in batch)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def sse_response(batches: AsyncIterator[list[dict[str, Any]]]) -> AnswerStream:
    return AnswerStream(batches)


def wants_event_stream(accept: str | None) -> bool:
    return bool(accept) and "text/event-stream" in (accept or "")

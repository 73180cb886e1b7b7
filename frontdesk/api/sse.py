"""Server-sent events framing for answer streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi.responses import StreamingResponse

SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def sse_frame(frame: dict[str, Any]) -> bytes:
    """One SSE event named after the frame's type, with the frame as its data; a persisted
    message carries its `seq` as the event id, so `Last-Event-ID` resumes after it."""
    head = b"event: " + str(frame["type"]).encode() + b"\n"
    if frame.get("type") == "message" and isinstance(frame.get("message"), dict):
        head += b"id: " + str(frame["message"].get("seq", "")).encode() + b"\n"
    return head + b"data: " + orjson.dumps(frame) + b"\n\n"


def sse_response(frames: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for frame in frames:
            yield sse_frame(frame)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


def wants_event_stream(accept: str | None) -> bool:
    return bool(accept) and "text/event-stream" in (accept or "")

"""Reading server-sent events from an upstream's streamed body, for the OpenAI-compatible and
Dify responders.

Bytes in, each event's `data` out, without decoding text or building objects per line: the
callers parse the data themselves (orjson), reading only the fields they use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from frontdesk.responders.base import ResponderError

# Once the last event has come only the end of the HTTP body is left; reading it lets the
# connection go back to the pool instead of being closed. An upstream that keeps the body open
# after its last event is not waited for longer than this.
DRAIN_S = 0.5


def event_object(data: bytes, malformed: str) -> dict[str, Any]:
    """An event's data as the JSON object both upstreams send; anything else is a protocol
    error with the message `malformed`."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ResponderError("protocol", malformed) from exc
    if not isinstance(parsed, dict):
        raise ResponderError("protocol", malformed)
    return parsed


class EventStream:
    """Server-sent events, fed the body's bytes as they arrive: `feed` returns the `data` of
    every event completed so far (several `data:` lines of one event joined by newlines).
    Other fields (`event:`, `id:`, `retry:`) and comments are skipped: neither upstream needs
    them (Dify names its events inside the data; its `event: ping` carries none)."""

    __slots__ = ("_data", "_rest")

    def __init__(self) -> None:
        self._rest = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = (self._rest + chunk).split(b"\n") if self._rest else chunk.split(b"\n")
        self._rest = lines.pop()  # an unfinished line waits for the next chunk
        events: list[bytes] = []
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line[:5] == b"data:":
                self._data.append(line[6:] if line[5:6] == b" " else line[5:])
        return events

    def end(self) -> list[bytes]:
        """The last event, when the body ended without the blank line that closes it."""
        return self.feed(b"\n\n") if self._rest or self._data else []


async def drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what is left of a body whose last event has come, for at most `DRAIN_S`."""
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(DRAIN_S):
            async for _ in chunks:
                pass

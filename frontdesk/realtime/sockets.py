"""What `/ws/chat` and `/ws/events` share: the close signal, the outbox, and a plain ASGI socket.

`Close` ends a connection with a contract close code. `connection_outbox` gives a socket its
bounded outbox; when the client falls behind, it is counted and closed with `CLOSE_SLOW_CONSUMER`.
`AsgiSocket` is one WebSocket spoken in plain ASGI messages, for the endpoints dispatched ahead
of the middleware stack (`frontdesk/api/realtime.py`): it holds the three ASGI values and a few
flags for the connection's life, and counts for `/metrics` what the metrics middleware counts for
the other endpoints (accepted, open, frames each way, closes by code and side). `direct_wire`
offers an accepted socket's outbox the fast path past the server's `send`
(`frontdesk/realtime/wire.py`) when the server is one it applies to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Protocol

from starlette.types import Message, Receive, Scope, Send

from frontdesk.observability import metrics
from frontdesk.realtime.frames import CLOSE_SLOW_CONSUMER
from frontdesk.realtime.outbox import Outbox
from frontdesk.realtime.wire import DirectWire, SentFrames, direct_wire
from frontdesk.services import Services

_sent_frames: dict[str, SentFrames] = {}  # per endpoint: direct writes, counted per loop turn


class Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Disconnected(Exception):
    """The client went away."""


class AsgiSocket:
    """A WebSocket in plain ASGI messages. `receive` is the server's own callable (awaiting it
    directly keeps one coroutine less per waiting connection); `text_of` reads its message."""

    __slots__ = ("_asgi_send", "_endpoint", "_metrics", "accepted", "closed", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, send: Send, endpoint: str) -> None:
        self.scope = scope
        self.receive = receive
        self._asgi_send = send
        self._endpoint = endpoint
        self._metrics = metrics.websocket_metrics(endpoint)
        self.accepted = False
        self.closed = False

    def header(self, name: bytes) -> str | None:
        """A request header of the handshake (`name` in lower case)."""
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value).decode("latin-1")
        return None

    async def accept(self) -> None:
        if (await self.receive())["type"] != "websocket.connect":
            raise Disconnected
        await self._asgi_send({"type": "websocket.accept"})
        self.accepted = True
        self._metrics.opened.inc()
        self._metrics.open.inc()

    def direct_wire(self, cut_off_s: float) -> DirectWire | None:
        """The accepted connection's transport, for frames written past the server's `send`;
        None when the server or the connection does not allow it (`frontdesk/realtime/wire.py`).
        Frames written there are counted in the same `sent` series. `cut_off_s`: how long a slow
        consumer may hold its buffer after its overflow."""
        sent = _sent_frames.get(self._endpoint)
        if sent is None:
            sent = _sent_frames[self._endpoint] = SentFrames(self._metrics.sent)
        return direct_wire(self._asgi_send, sent, cut_off_s)

    def text_of(self, message: Message) -> str | None:
        """The text of a received frame; None for a binary one. Raises `Disconnected`."""
        if message["type"] == "websocket.receive":
            self._metrics.received.inc()
            text: str | None = message.get("text")
            return text
        if message["type"] == "websocket.disconnect" and not self.closed:
            self.closed = True
            self._metrics.closed(int(message.get("code", 1005)), "client")
        raise Disconnected

    def send_text(self, data: str) -> Awaitable[None]:
        """The server's own `send` of one text frame (returned, not wrapped in a coroutine of
        ours: this runs once per frame and subscriber)."""
        self._metrics.sent.inc()
        return self._asgi_send({"type": "websocket.send", "text": data})

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with `code`, unless the connection already ended; never raises."""
        if self.closed:
            return
        self.closed = True
        self._metrics.closed(code, "server")
        with contextlib.suppress(Exception):
            await self._asgi_send({"type": "websocket.close", "code": code, "reason": reason or ""})

    def finished(self, failed: bool) -> None:
        """The endpoint returned (or raised): the server closes what it left open."""
        if self.accepted:
            self._metrics.open.dec()
            if not self.closed:
                self.closed = True
                self._metrics.closed(1011 if failed else 1000, "server")


class Socket(Protocol):
    """What the outbox needs of a socket: Starlette's `WebSocket` or an `AsgiSocket`."""

    def send_text(self, data: str) -> Awaitable[None]: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


async def close_quietly(ws: Socket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=reason)


def connection_outbox(ws: Socket, services: Services) -> Outbox:
    async def overflowed() -> None:
        services.realtime_stats["slow_consumers"] += 1
        await close_quietly(ws, CLOSE_SLOW_CONSUMER, "too slow: send queue full")

    return Outbox(
        ws.send_text,
        max_bytes=services.settings.ws_send_queue_bytes,
        flush_ms=services.settings.ws_delta_flush_ms,
        on_overflow=overflowed,
    )

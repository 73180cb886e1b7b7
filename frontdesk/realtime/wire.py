"""Server text frames encoded once and written straight to a connection's transport.

A message fanned out to thousands of `/ws/chat` subscribers is the same WebSocket frame for all of
them: server frames are not masked and per-message deflate is off, so the bytes on the wire are
identical. Through ASGI every subscriber still costs the server's `send` coroutine, a message
dict, a `websockets` `Frame` built, checked and serialised, and a join of its output. Here the
frame is encoded once (`text_frame`) and each connection's share is one `transport.write`.

That reaches past ASGI into uvicorn's `websockets-sansio` protocol (the object whose bound method
is the ASGI `send`), so `direct_wire` takes the fast path only when it can tell it is safe, at
accept time: the `send` is exactly `WebSocketsSansIOProtocol.send` (not a subclass overriding
it), the handshake is complete, no extension was negotiated (a compressed connection's frames
differ), and the object has what the write needs. Anything else (wsproto, the legacy
implementation, another server, a test client, compression on) gets None and keeps the ASGI
`send`. Every write checks the connection the way uvicorn's own `send` does (no close sent, not
disconnected, the `websockets` state still OPEN, the transport not closing), so a frame never
follows a close and uvicorn's own later frames (close, ping, pong) stay valid: frames are only
ever written whole, so the byte stream stays a sequence of frames whoever writes next.

Backpressure is the transport's: its write buffer is the connection's send queue, and the outbox
(`frontdesk/realtime/outbox.py`) closes a connection whose buffer would pass its byte limit. A
client that has stopped reading altogether never takes its close frame either, and the buffer
would be held for as long as the kernel keeps the connection (for ever, if the client keeps
acknowledging with a zero window): `cut_off_later` aborts the transport if its buffer still holds
data `cut_off_s` after the overflow.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Protocol

from websockets.protocol import OPEN

_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")
_FIN_TEXT = 0x81  # FIN, opcode 1 (text); no RSV bits, no mask (server to client)
WRITTEN, CLOSED, FULL = 0, 1, 2  # what `DirectWire.write` did


def text_frame(payload: bytes) -> bytes:
    """One complete, unmasked, unfragmented text frame around `payload` (UTF-8)."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 65536:
        return _HEAD_16.pack(_FIN_TEXT, 126, size) + payload
    return _HEAD_64.pack(_FIN_TEXT, 127, size) + payload


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...

    def abort(self) -> None: ...


class SentCounter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class SentFrames:
    """Frames written directly, added to an endpoint's `sent` counter once per event-loop turn:
    a Prometheus increment takes a lock, a measurable share of a frame's cost when it is paid
    per frame and subscriber. A scrape runs in a later turn, so it always sees every frame.
    `DirectWire.write` adds to `pending` itself (a call less per frame) and calls `schedule`
    for the first frame of a turn."""

    __slots__ = ("_counter", "pending")

    def __init__(self, counter: SentCounter) -> None:
        self._counter = counter
        self.pending = 0

    def schedule(self) -> None:
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        pending, self.pending = self.pending, 0
        if pending:
            self._counter.inc(pending)


class DirectWire:
    """One connection's transport, behind uvicorn's `websockets-sansio` protocol."""

    __slots__ = ("_connection", "_protocol", "cut_off_s", "sent", "transport")

    def __init__(self, protocol: Any, sent: SentFrames, cut_off_s: float) -> None:
        self._protocol = protocol  # uvicorn's WebSocketsSansIOProtocol
        self._connection = protocol.conn  # its `websockets` ServerProtocol
        self.transport: Transport = protocol.transport
        self.sent = sent
        self.cut_off_s = cut_off_s

    @property
    def open(self) -> bool:
        """Whether a data frame may be written now (what uvicorn's `send` checks, and the state
        `websockets` would refuse a frame in)."""
        protocol = self._protocol
        return not (
            protocol.close_sent
            or protocol.disconnected
            or self._connection.state is not OPEN
            or self.transport.is_closing()
        )

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel (the connection's send queue)."""
        return self.transport.get_write_buffer_size()

    def cut_off_later(self) -> None:
        """After an overflow: abort the connection in `cut_off_s` unless its buffer has drained
        by then (a client reading again gets its frames and the close; one that does not is cut
        off instead of holding the buffer)."""
        asyncio.get_running_loop().call_later(self.cut_off_s, self._cut_off)

    def _cut_off(self) -> None:
        if not self._protocol.disconnected and self.transport.get_write_buffer_size() > 0:
            self.transport.abort()

    def write(self, frame: bytes, limit: int) -> int:
        """Write one frame from `text_frame`: `WRITTEN`; `CLOSED` (nothing written) once the
        connection is closing or gone; `FULL` (nothing written) when the transport's buffer
        would pass `limit` bytes with it. One call per frame and subscriber, so it is all here."""
        protocol = self._protocol
        transport = self.transport
        if (
            protocol.close_sent
            or protocol.disconnected
            or self._connection._state is not OPEN  # the `state` property, without the call
            or transport.is_closing()
        ):
            return CLOSED
        if transport.get_write_buffer_size() + len(frame) > limit:
            return FULL
        transport.write(frame)
        sent = self.sent
        sent.pending += 1
        if sent.pending == 1:
            sent.schedule()
        return WRITTEN


def direct_wire(send: Any, sent: SentFrames, cut_off_s: float = 20.0) -> DirectWire | None:
    """The direct wire behind an accepted connection's ASGI `send`, or None when the fast path
    does not apply (see the module docstring): the caller then keeps the ASGI `send`."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
        from websockets.protocol import Protocol as SansIOConnection
    except ImportError:  # pragma: no cover - uvicorn without the websockets library
        return None
    protocol = getattr(send, "__self__", None)
    if getattr(send, "__func__", None) is not WebSocketsSansIOProtocol.send or not isinstance(
        protocol, WebSocketsSansIOProtocol
    ):
        return None
    connection = getattr(protocol, "conn", None)
    transport = getattr(protocol, "transport", None)
    if (
        not isinstance(connection, SansIOConnection)
        or connection.extensions  # e.g. permessage-deflate: frames differ per connection
        or getattr(connection, "_state", None) is not connection.state
        or connection.expect_continuation_frame
        or not getattr(protocol, "handshake_complete", False)
        or getattr(protocol, "initial_response", True) is not None
        or not isinstance(getattr(protocol, "close_sent", None), bool)
        or not isinstance(getattr(protocol, "disconnected", None), bool)
        or transport is None
        or not all(
            callable(getattr(transport, name, None))
            for name in ("write", "is_closing", "get_write_buffer_size", "abort")
        )
    ):
        return None
    wire = DirectWire(protocol, sent, cut_off_s)
    return wire if wire.open else None

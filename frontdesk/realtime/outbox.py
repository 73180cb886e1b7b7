"""A connection's outbox: ordered, bounded in bytes, with answer deltas coalesced.

A frame is written at once, in the caller's turn of the event loop, when nothing waits before
it (`start_eagerly`): an idle connection holds no task and a delivered frame costs no task hop.
When the transport pushes back (the client is not reading), that write and every frame queued
behind it are finished by one drain task, which ends when the queue is empty; so a client that
reads slowly only ever delays itself. When the bytes waiting pass `max_bytes`, the connection is
a slow consumer: the outbox stops and the connection is closed with `CLOSE_SLOW_CONSUMER`; the
client resumes from its last `seq`. Deltas for the same answer are merged and sent at most once
per `flush_ms`; any other frame first flushes pending deltas, so nothing is ever reordered.
A write that fails (the client is gone) closes the outbox; the socket's own loop ends it.

On a direct wire (`use_wire`, `frontdesk/realtime/wire.py`: uvicorn's `websockets-sansio`
without compression) frames skip the server's `send` coroutine: each is one `transport.write`
of bytes encoded once for every subscriber (`send_text`'s `frame`). There the transport's write
buffer is the send queue: nothing is queued here, no drain task ever runs, and a frame that would
take the buffer past `max_bytes` makes the connection a slow consumer, as above (and one that
still has not taken its data some seconds later is cut off: `DirectWire.cut_off_later`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import orjson

from frontdesk.realtime.eager import Rest, start_eagerly
from frontdesk.realtime.frames import encode
from frontdesk.realtime.wire import CLOSED, FULL, WRITTEN, DirectWire, text_frame

Writer = Callable[[str], Awaitable[None]]  # returns a coroutine (stepped by `start_eagerly`)
_background: set[asyncio.Task[None]] = set()  # overflow handlers, referenced until they finish


class Outbox:
    __slots__ = (
        "_delta_timer",
        "_deltas",
        "_drain",
        "_on_overflow",
        "_queue",
        "_queued_bytes",
        "_wire",
        "_write",
        "closed",
        "flush_s",
        "frames_sent",
        "max_bytes",
        "overflowed",
    )

    def __init__(
        self,
        write: Writer,
        *,
        max_bytes: int = 1 << 20,
        flush_ms: float = 25.0,
        on_overflow: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self._write = write
        self.max_bytes = max_bytes
        self.flush_s = flush_ms / 1000
        self._on_overflow = on_overflow
        self._queue: deque[str] | None = None  # made when the transport first pushes back
        self._queued_bytes = 0
        self._deltas: dict[str, dict[str, Any]] | None = None
        self._delta_timer: asyncio.TimerHandle | None = None
        self._drain: asyncio.Task[None] | None = None
        self._wire: DirectWire | None = None
        self.closed = False
        self.overflowed = False
        self.frames_sent = 0

    @property
    def queued_bytes(self) -> int:
        if self._wire is not None:
            return self._wire.buffered()
        return self._queued_bytes

    @property
    def direct(self) -> bool:
        """Whether frames go straight to the transport (`use_wire`)."""
        return self._wire is not None

    def use_wire(self, wire: DirectWire) -> None:
        """Write every frame from now on straight to `wire` (before the first frame is sent:
        frames already queued for the server's `send` would be overtaken)."""
        if self._drain is not None or self.frames_sent:
            raise RuntimeError("an outbox changes its way of writing only before its first frame")
        self._wire = wire

    def send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        if frame.get("type") == "delta":
            self._add_delta(frame)
            return
        if self._wire is not None:
            if self._deltas:
                self._flush_deltas()
            self._write_wire(self._wire, text_frame(orjson.dumps(frame)))
            return
        self.send_text(encode(frame))

    def send_text(self, text: str, frame: bytes | None = None) -> None:
        """Send a frame already encoded (one encoding shared by every subscriber). `frame` is the
        same text as a WebSocket frame (`text_frame`), also shared, for direct wires."""
        if self._deltas:
            self._flush_deltas()
        if self.closed:
            return
        wire = self._wire
        if wire is None:
            if self._drain is None:
                self._write_now(text)  # the common case through the server's `send`
            else:
                self._enqueue(text)
            return
        # A direct wire: the fan-out's case, once per frame and subscriber (`_write_wire`,
        # inlined to save a call per frame).
        try:
            done = wire.write(
                frame if frame is not None else text_frame(text.encode()), self.max_bytes
            )
        except Exception:  # the transport failed: the client is gone
            done = CLOSED
        if done == WRITTEN:
            self.frames_sent += 1
        else:
            self._not_written(done)

    def _write_wire(self, wire: DirectWire, frame: bytes) -> None:
        if self.closed:
            return
        try:
            done = wire.write(frame, self.max_bytes)
        except Exception:  # the transport failed: the client is gone
            done = CLOSED
        if done == WRITTEN:
            self.frames_sent += 1
        else:
            self._not_written(done)

    def _not_written(self, done: int) -> None:
        if done == FULL:
            self._overflow()  # a slow consumer
        else:  # closing or gone
            self.close()

    def _add_delta(self, frame: dict[str, Any]) -> None:
        if self._deltas is None:
            self._deltas = {}
        key = str(frame.get("message_id"))
        pending = self._deltas.get(key)
        if pending is None:
            self._deltas[key] = dict(frame)
        else:
            pending["text"] = str(pending.get("text", "")) + str(frame.get("text", ""))
        if self._delta_timer is None:
            loop = asyncio.get_running_loop()
            self._delta_timer = loop.call_later(self.flush_s, self._flush_deltas)

    def _flush_deltas(self) -> None:
        if self._delta_timer is not None:
            self._delta_timer.cancel()
            self._delta_timer = None
        deltas, self._deltas = self._deltas, None
        for frame in (deltas or {}).values():
            if self._wire is not None:
                self._write_wire(self._wire, text_frame(orjson.dumps(frame)))
            else:
                self._enqueue(encode(frame))

    def _enqueue(self, text: str) -> None:
        if self.closed:
            return
        if self._drain is None:
            self._write_now(text)
            return
        size = len(text)
        if self._queued_bytes + size > self.max_bytes:
            self._overflow()
            return
        assert self._queue is not None
        self._queue.append(text)
        self._queued_bytes += size

    def _write_now(self, text: str) -> None:
        try:
            rest = start_eagerly(cast(Coroutine[Any, Any, None], self._write(text)))
        except Exception:  # the client is gone
            self.close()
            return
        self.frames_sent += 1
        if rest is not None:  # the transport pushed back: finish this write, then the queue
            if self._queue is None:
                self._queue = deque()
            self._queued_bytes = len(text)
            self._drain = asyncio.get_running_loop().create_task(self._drain_queue(rest, text))

    async def _drain_queue(self, rest: Rest, first: str) -> None:
        queue = self._queue
        assert queue is not None
        try:
            try:
                await rest
            finally:
                self._queued_bytes -= len(first)
            while queue and not self.closed:
                text = queue.popleft()
                try:
                    await self._write(text)
                finally:
                    self._queued_bytes -= len(text)
                self.frames_sent += 1
        except Exception:  # the client is gone
            self.close()
        finally:
            self._drain = None

    def _overflow(self) -> None:
        self.overflowed = True
        self.close()
        if self._wire is not None:
            self._wire.cut_off_later()  # if the client never reads again
        if self._on_overflow is not None:
            task = asyncio.get_running_loop().create_task(self._on_overflow())
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Wait until everything queued so far is written (used before a clean close). On a
        direct wire everything already is with the transport, ahead of any close frame."""
        if self._deltas:
            self._flush_deltas()
        if self._drain is not None:
            await asyncio.wait({self._drain}, timeout=timeout_s)

    def close(self) -> None:
        self.closed = True
        if self._delta_timer is not None:
            self._delta_timer.cancel()
            self._delta_timer = None
        self._deltas = None

    async def stop(self) -> None:
        self.close()
        task = self._drain
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

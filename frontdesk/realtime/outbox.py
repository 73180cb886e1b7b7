"""A connection's outbox: ordered, bounded in bytes, with answer deltas coalesced.

Frames are queued and written by one task, so a client that reads slowly only ever delays itself.
When the bytes waiting pass `max_bytes`, the connection is a slow consumer: the outbox stops and
the connection is closed with `CLOSE_SLOW_CONSUMER`; the client resumes from its last `seq`.
Deltas for the same answer are merged and sent at most once per `flush_ms`; any other frame first
flushes pending deltas, so nothing is ever reordered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from frontdesk.realtime.frames import encode

Writer = Callable[[str], Awaitable[None]]


class SlowConsumer(Exception):
    pass


class Outbox:
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
        self._queue: deque[str] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._deltas: dict[str, dict[str, Any]] = {}
        self._delta_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.overflowed = False
        self.frames_sent = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        if frame.get("type") == "delta":
            self._add_delta(frame)
            return
        self._flush_deltas()
        self._enqueue(encode(frame))

    def _add_delta(self, frame: dict[str, Any]) -> None:
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
        deltas, self._deltas = self._deltas, {}
        for frame in deltas.values():
            self._enqueue(encode(frame))

    def _enqueue(self, text: str) -> None:
        if self.closed:
            return
        size = len(text)
        if self._queued_bytes + size > self.max_bytes:
            self.overflowed = True
            self.close()
            if self._on_overflow is not None:
                asyncio.get_running_loop().create_task(self._on_overflow())
            return
        self._queue.append(text)
        self._queued_bytes += size
        self._idle.clear()
        self._ready.set()

    async def _run(self) -> None:
        while not self.closed:
            await self._ready.wait()
            while self._queue and not self.closed:
                text = self._queue.popleft()
                try:
                    await self._write(text)
                finally:
                    self._queued_bytes -= len(text)
                self.frames_sent += 1
            self._ready.clear()
            self._idle.set()

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Wait until everything queued so far is written (used before a clean close)."""
        self._flush_deltas()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    def close(self) -> None:
        self.closed = True
        if self._delta_timer is not None:
            self._delta_timer.cancel()
        self._ready.set()
        self._idle.set()

    async def stop(self) -> None:
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

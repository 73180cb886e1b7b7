"""The broker: at-most-once publish/subscribe between the parts of the app (and processes).

One small interface, `Broker`, with an in-process implementation here. A channel has listeners:
plain callbacks that `publish` calls in order, synchronously, without awaiting anything (they
queue, schedule or hand off their work; one that raises is logged and the others still run).
`subscribe` is the iterator form on top of that: a bounded queue per subscriber, for consumers
that want a task of their own. A subscriber that falls behind loses publications rather than
slowing the publisher, which is safe because every consumer can repair from the database
(messages by `seq`, events by offset).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

log = logging.getLogger(__name__)

RESYNC = b""
"""Delivered to every listener after the broker lost publications (e.g. Redis came back): the
listener must repair from the database."""

Listener = Callable[[bytes], None]


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @property
    def dropped(self) -> int: ...


class Broker(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, payload: bytes) -> None: ...

    async def listen(self, channel: str, listener: Listener) -> None: ...

    async def unlisten(self, channel: str, listener: Listener) -> None: ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]: ...

    @property
    def healthy(self) -> bool: ...


class _QueueSubscription:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize)
        self._dropped = 0

    @property
    def dropped(self) -> int:
        return self._dropped

    def offer(self, payload: bytes) -> None:
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            self._dropped += 1

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield await self.queue.get()


class MemoryBroker:
    """Fan-out inside one process."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._channels: dict[str, list[Listener]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._channels.clear()

    @property
    def healthy(self) -> bool:
        return True

    async def publish(self, channel: str, payload: bytes) -> None:
        self.deliver(channel, payload)

    def deliver(self, channel: str, payload: bytes) -> None:
        listeners = self._channels.get(channel)
        if not listeners:
            return
        for listener in tuple(listeners):  # a listener may remove itself (or others)
            try:
                listener(payload)
            except Exception:
                log.exception("broker listener failed", extra={"channel": channel})

    def resync_all(self) -> None:
        for channel in list(self._channels):
            self.deliver(channel, RESYNC)

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    def add_listener(self, channel: str, listener: Listener) -> None:
        self._channels.setdefault(channel, []).append(listener)

    def remove_listener(self, channel: str, listener: Listener) -> None:
        listeners = self._channels.get(channel)
        if listeners is None:
            return
        try:
            listeners.remove(listener)
        except ValueError:
            return
        if not listeners:
            del self._channels[channel]

    async def listen(self, channel: str, listener: Listener) -> None:
        self.add_listener(channel, listener)

    async def unlisten(self, channel: str, listener: Listener) -> None:
        self.remove_listener(channel, listener)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[_QueueSubscription]:
        return queue_subscription(self, channel, self.queue_size)


@asynccontextmanager
async def queue_subscription(
    broker: Broker, channel: str, queue_size: int
) -> AsyncIterator[_QueueSubscription]:
    """`subscribe` for any broker: a bounded queue fed by a listener."""
    subscription = _QueueSubscription(queue_size)
    await broker.listen(channel, subscription.offer)
    try:
        yield subscription
    finally:
        await broker.unlisten(channel, subscription.offer)

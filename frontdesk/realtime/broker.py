"""The broker: at-most-once publish/subscribe between the parts of the app (and processes).

One small interface, `Broker`, with an in-process implementation here. Subscribers get bounded
queues; a subscriber that falls behind loses publications rather than slowing the publisher, which
is safe because every consumer can repair from the database (messages by `seq`, events by offset).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

RESYNC = b""
"""Delivered to every subscription after the broker lost publications (e.g. Redis came back):
the subscriber must repair from the database."""


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def next(self, timeout_s: float) -> bytes | None: ...

    @property
    def dropped(self) -> int: ...


class Broker(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, payload: bytes) -> None: ...

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

    async def next(self, timeout_s: float) -> bytes | None:
        """The next publication, or None after `timeout_s` of silence. (Cancelling a queue read
        is safe; cancelling an async generator's `anext` would end the generator.)"""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return None


class MemoryBroker:
    """Fan-out inside one process."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._channels: dict[str, set[_QueueSubscription]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._channels.clear()

    @property
    def healthy(self) -> bool:
        return True

    async def publish(self, channel: str, payload: bytes) -> None:
        for subscription in tuple(self._channels.get(channel, ())):
            subscription.offer(payload)

    def resync_all(self) -> None:
        for subscriptions in self._channels.values():
            for subscription in subscriptions:
                subscription.offer(RESYNC)

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[_QueueSubscription]:
        subscription = _QueueSubscription(self.queue_size)
        self._channels.setdefault(channel, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._channels.get(channel)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._channels[channel]

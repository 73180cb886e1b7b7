"""The Redis broker: the same `Broker` interface, fanned out to every process through pub/sub.

Each process delivers its own publications locally and directly, so it keeps serving its clients
when Redis is down; publications from other processes arrive through Redis (a process skips its
own, recognised by an origin tag). When the connection comes back, every local subscription gets
`RESYNC` and repairs what it missed from the database. `healthy` is what `/ready` reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from frontdesk.realtime.broker import Listener, MemoryBroker, _QueueSubscription, queue_subscription

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

log = logging.getLogger(__name__)
SEPARATOR = b"|"


class RedisBroker:
    def __init__(self, url: str, *, queue_size: int = 1000, retry_s: float = 0.5) -> None:
        from redis.asyncio import Redis

        self.url = url
        self.retry_s = retry_s
        self.queue_size = queue_size
        self._local = MemoryBroker(queue_size)
        self._origin = secrets.token_hex(6).encode()
        self._publisher: Redis = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._pubsub: PubSub | None = None
        self._counts: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._healthy = False
        self._stopping = False
        self.publish_failures = 0

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        # Give the first connection a moment so a healthy Redis is ready when serving starts.
        for _ in range(20):
            if self._healthy:
                break
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._publisher.aclose()
        await self._local.close()

    async def publish(self, channel: str, payload: bytes) -> None:
        self._local.deliver(channel, payload)
        if not self._healthy:
            self.publish_failures += 1
            return
        try:
            await self._publisher.publish(channel, self._origin + SEPARATOR + payload)
        except Exception:  # Redis went away: local delivery is done, the DB repairs the rest
            self.publish_failures += 1
            self._healthy = False

    async def listen(self, channel: str, listener: Listener) -> None:
        self._local.add_listener(channel, listener)
        await self._add(channel)

    async def unlisten(self, channel: str, listener: Listener) -> None:
        self._local.remove_listener(channel, listener)
        await self._remove(channel)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[_QueueSubscription]:
        return queue_subscription(self, channel, self.queue_size)

    async def _add(self, channel: str) -> None:
        self._counts[channel] += 1
        if self._counts[channel] == 1 and self._pubsub is not None and self._healthy:
            async with self._lock:
                with contextlib.suppress(Exception):
                    await self._pubsub.subscribe(channel)

    async def _remove(self, channel: str) -> None:
        self._counts[channel] -= 1
        if self._counts[channel] <= 0:
            del self._counts[channel]
            if self._pubsub is not None and self._healthy:
                async with self._lock:
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)

    async def _run(self) -> None:
        from redis.asyncio import Redis

        was_down = False
        while not self._stopping:
            client: Redis = Redis.from_url(self.url, socket_connect_timeout=1)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                async with self._lock:
                    # A placeholder channel keeps the connection in subscribed mode.
                    await pubsub.subscribe("frontdesk:broker", *self._counts)
                await self._publisher.ping()
                self._pubsub = pubsub
                self._healthy = True
                if was_down:
                    log.warning("broker reconnected; subscribers repair from the database")
                    self._local.resync_all()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._healthy or not was_down:
                    log.warning("broker connection lost: %r", exc)
                self._healthy = False
                was_down = True
                self._pubsub = None
                await asyncio.sleep(self.retry_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer redis
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        data = message.get("data")
        channel = message.get("channel")
        if not isinstance(data, bytes) or channel is None:
            return
        origin, _, payload = data.partition(SEPARATOR)
        if origin == self._origin:
            return
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        self._local.deliver(name, payload)

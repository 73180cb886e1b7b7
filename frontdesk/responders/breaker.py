"""Circuit breakers, one per upstream: closed → open → half-open → closed.

After `failure_threshold` failures within `window_s` the circuit opens for `open_s`: calls fail
at once (`circuit_open`) and the chain moves on to the fallback. Then one caller at a time may
probe (half-open); a success closes the circuit, a failure opens it again. The state lives in a
small key-value store: in memory per process, or in Redis so that every process shares it.

A call through a closed circuit costs one store round trip: its state is read in one go (the open
mark and the failure count), and a success clears the failure count only when that read, or a
failure recorded since, saw any.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from frontdesk.observability import metrics
from frontdesk.responders.base import ResponderError

if TYPE_CHECKING:
    from redis.asyncio import Redis


class BreakerStore(Protocol):
    async def incr(self, key: str, ttl_s: float) -> int: ...

    async def get_int(self, key: str) -> int: ...

    async def get_ints(self, *keys: str) -> list[int]: ...

    async def set_nx(self, key: str, ttl_s: float) -> bool: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, *keys: str) -> None: ...


class MemoryBreakerStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._values: dict[str, tuple[int, float]] = {}

    def _live(self, key: str) -> tuple[int, float] | None:
        entry = self._values.get(key)
        if entry is not None and entry[1] <= self.clock():
            del self._values[key]
            return None
        return entry

    async def incr(self, key: str, ttl_s: float) -> int:
        entry = self._live(key)
        value = (entry[0] if entry else 0) + 1
        self._values[key] = (value, entry[1] if entry else self.clock() + ttl_s)
        return value

    async def get_int(self, key: str) -> int:
        entry = self._live(key)
        return entry[0] if entry else 0

    async def get_ints(self, *keys: str) -> list[int]:
        return [await self.get_int(key) for key in keys]

    async def set_nx(self, key: str, ttl_s: float) -> bool:
        if self._live(key) is not None:
            return False
        self._values[key] = (1, self.clock() + ttl_s)
        return True

    async def exists(self, key: str) -> bool:
        return self._live(key) is not None

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._values.pop(key, None)


class RedisBreakerStore:
    def __init__(self, client: Redis, prefix: str = "fd:cb:") -> None:
        self.client = client
        self.prefix = prefix

    async def incr(self, key: str, ttl_s: float) -> int:
        name = self.prefix + key
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.pexpire(name, int(ttl_s * 1000), nx=True)
            value, _ = await pipe.execute()
        return int(value)

    async def get_int(self, key: str) -> int:
        value = await self.client.get(self.prefix + key)
        return int(value) if value is not None else 0

    async def get_ints(self, *keys: str) -> list[int]:
        values = await self.client.mget([self.prefix + k for k in keys])
        return [int(v) if v is not None else 0 for v in values]

    async def set_nx(self, key: str, ttl_s: float) -> bool:
        done = await self.client.set(self.prefix + key, 1, nx=True, px=int(ttl_s * 1000))
        return bool(done)

    async def exists(self, key: str) -> bool:
        return bool(await self.client.exists(self.prefix + key))

    async def delete(self, *keys: str) -> None:
        await self.client.delete(*(self.prefix + k for k in keys))


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        store: BreakerStore,
        *,
        failure_threshold: int = 5,
        window_s: float = 60.0,
        open_s: float = 30.0,
    ) -> None:
        self.name = name
        self.store = store
        self.failure_threshold = failure_threshold
        self.window_s = window_s
        self.open_s = open_s
        self._failures = f"{name}:failures"
        self._open = f"{name}:open"
        self._probe = f"{name}:probe"
        # Failures this process last saw in the store: whether a success has any to clear.
        self._failures_seen = 0

    async def state(self) -> str:
        state = await self._read_state()
        metrics.circuit_state(self.name, state)
        return state

    async def _read_state(self) -> str:
        opened, failures = await self.store.get_ints(self._open, self._failures)
        self._failures_seen = failures
        if opened:
            return "open"
        if failures >= self.failure_threshold:
            return "half_open"
        return "closed"

    async def before_call(self) -> bool:
        """Whether this call is a half-open probe; raises `circuit_open` when it may not run."""
        state = await self.state()
        if state == "closed":
            return False
        if state == "half_open" and await self.store.set_nx(self._probe, self.open_s):
            return True
        raise ResponderError("circuit_open", f"{self.name} is failing; its circuit is open.")

    async def record_success(self, probe: bool) -> None:
        if probe or self._failures_seen:
            self._failures_seen = 0
            await self.store.delete(self._failures, self._probe, self._open)
            metrics.circuit_state(self.name, "closed")

    async def record_failure(self, probe: bool) -> bool:
        """Count a failure; True when this failure opened the circuit."""
        if probe:
            await self.store.delete(self._probe)
            await self.store.set_nx(self._open, self.open_s)
            self._failures_seen = await self.store.incr(self._failures, self.window_s + self.open_s)
            metrics.circuit_opened(self.name)
            return True
        failures = await self.store.incr(self._failures, self.window_s + self.open_s)
        self._failures_seen = failures
        if failures >= self.failure_threshold and await self.store.set_nx(self._open, self.open_s):
            metrics.circuit_opened(self.name)
            return True
        return False

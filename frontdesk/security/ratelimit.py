"""Rate limits: the GCRA bucket, its memory and Redis stores, and the fail-open facade.

A limit is a `Rate` (tokens per second and a burst): a token bucket of `burst` tokens refilled at
`per_s`, computed with GCRA (docs/decisions/0007-rate-limits-gcra.md). Each key keeps one number,
its theoretical arrival time (TAT), in whole microseconds. `MemoryRateLimitStore` is per process;
`RedisRateLimitStore` is shared by every process and runs the whole step in one Lua script on
Redis's own clock. This module decides; it does not know routes, sites or settings, and it never
blocks a request because a store is down: `RateLimiter` lets it through and logs a warning.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from frontdesk.errors import AppError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

_US = 1_000_000
_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
_RATE = re.compile(r"^\s*([0-9]+)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    """A token bucket: `burst` tokens at most, refilled at `per_s` tokens per second."""

    per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_s) and self.per_s > 0):
            raise ValueError(f"A rate must be a positive number per second, not {self.per_s!r}.")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"A burst must be a whole number of at least 1, not {self.burst!r}.")

    @property
    def interval_us(self) -> int:
        """Microseconds between two tokens (GCRA's emission interval)."""
        return max(1, round(_US / self.per_s))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after_s: float
    """Seconds until this request would be allowed; 0 when allowed."""
    reset_after_s: float
    """Seconds until the bucket is full again."""


class RateLimitUnavailable(Exception):
    """The shared store cannot be reached; the caller decides what to do (see `RateLimiter`)."""


class RateLimitStore(Protocol):
    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        """Take `cost` tokens from `key`'s bucket if it has them; never partially."""
        ...


def parse_rate(text: str, burst: int | None = None) -> Rate:
    """`"10/minute"` (also `10/min`, `10/m`, `5/second`, `100/hours`, `1000/day`) → `Rate`.

    Without `burst`, the bucket holds the count itself (`10/minute` bursts to 10).
    """
    match = _RATE.match(text.lower())
    unit = _UNITS.get(match.group(2)) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"Invalid rate {text!r}: expected N/second, N/minute, N/hour or N/day (e.g. 10/minute)."
        )
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"Invalid rate {text!r}: the count must be at least 1.")
    return Rate(per_s=count / unit, burst=count if burst is None else burst)


VISITOR_MESSAGES = parse_rate("10/minute", burst=20)
"""The default visitor message limit; sites may set their own."""


def retry_after_header(decision: Decision) -> str:
    """`Retry-After` in whole seconds, rounded up so a client that waits is let in; at least 1."""
    return str(max(1, math.ceil(round(decision.retry_after_s, 6))))


def rate_limited(decision: Decision) -> AppError:
    """The 429 error (code `rate_limited`, with `Retry-After`) for a refused decision."""
    seconds = retry_after_header(decision)
    return AppError(
        "rate_limited",
        f"Too many requests. Try again in {seconds} s.",
        429,
        {"Retry-After": seconds},
    )


def _check_cost(rate: Rate, cost: int) -> None:
    if not 1 <= cost <= rate.burst:
        raise ValueError(f"A cost must be between 1 and the burst ({rate.burst}), not {cost}.")


def _decision(allowed: bool, remaining: int, retry_us: int, reset_us: int) -> Decision:
    return Decision(allowed, max(0, remaining), retry_us / _US, reset_us / _US)


def _gcra(tat_us: int | None, now_us: int, rate: Rate, cost: int) -> tuple[Decision, int | None]:
    """One GCRA step: the decision and the key's new TAT (None when refused: nothing changes).

    The Lua script in `RedisRateLimitStore` is this function, line for line.
    """
    interval = rate.interval_us
    tolerance = interval * rate.burst
    tat = now_us if tat_us is None else max(tat_us, now_us)
    new_tat = tat + interval * cost
    allow_at = new_tat - tolerance
    if allow_at > now_us:
        remaining = (tolerance - (tat - now_us)) // interval
        return _decision(False, remaining, allow_at - now_us, tat - now_us), None
    reset = new_tat - now_us
    return _decision(True, (tolerance - reset) // interval, 0, reset), new_tat


class MemoryRateLimitStore:
    """Buckets in this process only: each process counts on its own.

    Memory is bounded by pruning full buckets (TAT in the past, so forgetting them changes
    nothing) once the table grows past `max_keys`; only buckets in use are kept.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._prune_at = max_keys
        self._tats: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        # No await below: on one event loop the read-modify-write is atomic.
        _check_cost(rate, cost)
        now = round(self._clock() * _US)
        decision, new_tat = _gcra(self._tats.get(key), now, rate, cost)
        if new_tat is not None:
            self._tats[key] = new_tat
            if len(self._tats) > self._prune_at:
                self._prune(now)
        return decision

    def _prune(self, now_us: int) -> None:
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now_us}
        # When most buckets are live, wait for the table to double before scanning again.
        self._prune_at = max(self._max_keys, 2 * len(self._tats))


# KEYS[1] = bucket; ARGV = interval_us, burst, cost. Returns {allowed, remaining, retry_us,
# reset_us} as integers. TAT is stored with %.0f: Lua's default number format keeps only 14
# digits, and a TAT in microseconds since 1970 has 16.
_GCRA_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tolerance = interval * burst
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = math.max(tonumber(stored), now) end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
if allow_at > now then
  local remaining = math.floor((tolerance - (tat - now)) / interval)
  return {0, remaining, allow_at - now, tat - now}
end
local reset = new_tat - now
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'PX', string.format('%.0f', math.ceil(reset / 1000)))
return {1, math.floor((tolerance - reset) / interval), 0, reset}
"""


class RedisRateLimitStore:
    """Buckets in Redis, shared by every process; one atomic script per hit, on Redis's clock.

    Each key expires when its bucket is full again. Any Redis failure, or no answer within
    `timeout_s` (the client's own retries can take seconds), raises `RateLimitUnavailable`.
    """

    def __init__(self, client: Redis, prefix: str = "fd:rl:", *, timeout_s: float = 0.5) -> None:
        from redis.exceptions import RedisError

        self._prefix = prefix
        self._timeout_s = timeout_s
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self._script = client.register_script(_GCRA_LUA)

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        _check_cost(rate, cost)
        args = [rate.interval_us, rate.burst, cost]
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._script(keys=[self._prefix + key], args=args)
        except self._errors as exc:
            raise RateLimitUnavailable(f"The rate limit store is unavailable: {exc!r}") from exc
        allowed, remaining, retry_us, reset_us = (int(value) for value in reply)
        return _decision(allowed == 1, remaining, retry_us, reset_us)


class RateLimiter:
    """Checks `scope:identity` keys against a store; fails open when the store is unavailable.

    Failing open is deliberate: a Redis outage must not take the chat down with it. The outage
    is logged as a warning at most once per `warn_every_s`, and such requests are let through
    as if their bucket were full.
    """

    def __init__(
        self,
        store: RateLimitStore,
        *,
        warn_every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._warn_every_s = warn_every_s
        self._clock = clock
        self._warned_at: float | None = None

    async def check(self, scope: str, identity: str, rate: Rate, cost: int = 1) -> Decision:
        try:
            return await self.store.hit(f"{scope}:{identity}", rate, cost)
        except RateLimitUnavailable as exc:
            now = self._clock()
            if self._warned_at is None or now - self._warned_at >= self._warn_every_s:
                self._warned_at = now
                log.warning("rate limits are not enforced (failing open): %s", exc)
            return Decision(True, rate.burst - cost, 0.0, 0.0)

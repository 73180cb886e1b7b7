from __future__ import annotations

import asyncio
import logging
import math

import pytest

from frontdesk.security.ratelimit import (
    VISITOR_MESSAGES,
    Decision,
    MemoryRateLimitStore,
    Rate,
    RateLimiter,
    RateLimitUnavailable,
    parse_rate,
    rate_limited,
    retry_after_header,
)

TEN_PER_MINUTE = parse_rate("10/minute", burst=20)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryRateLimitStore:
    return MemoryRateLimitStore(clock=clock)


async def hits(store: MemoryRateLimitStore, n: int, key: str = "k") -> list[Decision]:
    return [await store.hit(key, TEN_PER_MINUTE) for _ in range(n)]


async def test_burst_of_30_lets_20_through(store: MemoryRateLimitStore) -> None:
    decisions = await hits(store, 30)
    assert [d.allowed for d in decisions] == [True] * 20 + [False] * 10
    assert [d.remaining for d in decisions[:20]] == list(range(19, -1, -1))
    assert all(d.retry_after_s == 0 for d in decisions[:20])
    refused = decisions[20]
    assert refused.remaining == 0
    assert refused.retry_after_s == pytest.approx(6.0, abs=0.01)
    assert refused.reset_after_s == pytest.approx(120.0, abs=0.01)
    assert retry_after_header(refused) == "6"


async def test_one_more_after_one_interval(store: MemoryRateLimitStore, clock: Clock) -> None:
    await hits(store, 30)
    clock.now += 3
    half = await store.hit("k", TEN_PER_MINUTE)
    assert not half.allowed
    assert half.retry_after_s == pytest.approx(3.0, abs=0.01)
    clock.now += 3
    assert [d.allowed for d in await hits(store, 5)] == [True, False, False, False, False]


async def test_full_refill_after_120_s(store: MemoryRateLimitStore, clock: Clock) -> None:
    await hits(store, 30)
    clock.now += 119.9
    assert sum(d.allowed for d in await hits(store, 30)) == 19
    clock.now += 1000
    assert sum(d.allowed for d in await hits(store, 30)) == 20


async def test_concurrent_hits_on_one_loop(store: MemoryRateLimitStore) -> None:
    decisions = await asyncio.gather(*(store.hit("k", TEN_PER_MINUTE) for _ in range(30)))
    assert sum(d.allowed for d in decisions) == 20


async def test_keys_are_independent(store: MemoryRateLimitStore) -> None:
    await hits(store, 20, key="a")
    assert (await store.hit("b", TEN_PER_MINUTE)).allowed
    assert not (await store.hit("a", TEN_PER_MINUTE)).allowed


async def test_cost(store: MemoryRateLimitStore, clock: Clock) -> None:
    cost5 = [await store.hit("k", TEN_PER_MINUTE, cost=5) for _ in range(5)]
    assert [d.allowed for d in cost5] == [True] * 4 + [False]
    assert [d.remaining for d in cost5[:4]] == [15, 10, 5, 0]
    assert cost5[4].retry_after_s == pytest.approx(30.0, abs=0.01)
    clock.now += 12
    refused = await store.hit("k", TEN_PER_MINUTE, cost=3)
    assert not refused.allowed  # a refused hit takes nothing ...
    assert refused.remaining == 2
    assert refused.retry_after_s == pytest.approx(6.0, abs=0.01)
    assert (await store.hit("k", TEN_PER_MINUTE, cost=2)).allowed  # ... so these two remain


@pytest.mark.parametrize("cost", [0, -1, 21])
async def test_cost_out_of_range(store: MemoryRateLimitStore, cost: int) -> None:
    with pytest.raises(ValueError, match="cost"):
        await store.hit("k", TEN_PER_MINUTE, cost=cost)


async def test_memory_is_bounded(clock: Clock) -> None:
    store = MemoryRateLimitStore(clock=clock, max_keys=10)
    second, hour = parse_rate("1/second"), parse_rate("1/hour")
    for i in range(10):
        await store.hit(f"old{i}", second)
    clock.now += 5
    await store.hit("live", hour)
    assert len(store) == 1  # the full buckets are forgotten ...
    await store.hit("new", second)
    assert not (await store.hit("live", hour)).allowed  # ... the live one is kept
    assert len(store) == 2


def test_rate_for_ten_per_minute() -> None:
    assert Rate(per_s=10 / 60, burst=20) == TEN_PER_MINUTE
    assert TEN_PER_MINUTE.interval_us == 6_000_000
    assert VISITOR_MESSAGES == TEN_PER_MINUTE


@pytest.mark.parametrize(
    ("text", "per_s", "burst"),
    [
        ("10/minute", 10 / 60, 10),
        ("10/min", 10 / 60, 10),
        ("10/minutes", 10 / 60, 10),
        (" 3 / M ", 3 / 60, 3),
        ("5/second", 5, 5),
        ("5/s", 5, 5),
        ("5/sec", 5, 5),
        ("100/hours", 100 / 3600, 100),
        ("100/hr", 100 / 3600, 100),
        ("1000/day", 1000 / 86400, 1000),
        ("1000/d", 1000 / 86400, 1000),
    ],
)
def test_parse_rate(text: str, per_s: float, burst: int) -> None:
    rate = parse_rate(text)
    assert math.isclose(rate.per_s, per_s)
    assert rate.burst == burst
    assert parse_rate(text, burst=7).burst == 7


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "/minute",
        "ten/minute",
        "10/fortnight",
        "10/ms",
        "1.5/second",
        "-1/minute",
        "10/minute/2",
        "10 per minute",
        "0/minute",
    ],
)
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid rate"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("per_s", "burst"), [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1), (1, 0), (1, True)]
)
def test_rate_rejects(per_s: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        Rate(per_s=per_s, burst=burst)


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(6.0, "6"), (5.2, "6"), (6.000001, "7"), (6.0000000001, "6"), (0.0001, "1"), (0.0, "1")],
)
def test_retry_after_header(seconds: float, header: str) -> None:
    assert retry_after_header(Decision(False, 0, seconds, seconds)) == header


def test_rate_limited_error() -> None:
    error = rate_limited(Decision(False, 0, 5.5, 120.0))
    assert (error.status, error.code, error.headers) == (429, "rate_limited", {"Retry-After": "6"})
    assert error.body()["error"]["code"] == "rate_limited"


async def test_limiter_keys_by_scope_and_identity(store: MemoryRateLimitStore) -> None:
    limiter = RateLimiter(store)
    one = parse_rate("1/minute")
    assert (await limiter.check("visitor", "v1", one)).allowed
    assert not (await limiter.check("visitor", "v1", one)).allowed
    assert (await limiter.check("visitor", "v2", one)).allowed
    assert (await limiter.check("ip", "v1", one)).allowed
    assert not (await store.hit("visitor:v1", one)).allowed


class DownStore:
    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        raise RateLimitUnavailable("down")


async def test_limiter_fails_open_and_warns_every_30_s(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(DownStore(), clock=clock)
    with caplog.at_level(logging.WARNING, logger="frontdesk.security.ratelimit"):
        for _ in range(3):
            decision = await limiter.check("visitor", "v1", TEN_PER_MINUTE)
            assert decision == Decision(True, 19, 0.0, 0.0)
            clock.now += 10
        assert len(caplog.records) == 1
        clock.now += 1
        await limiter.check("visitor", "v1", TEN_PER_MINUTE)
    assert len(caplog.records) == 2
    assert "failing open" in caplog.records[0].getMessage()

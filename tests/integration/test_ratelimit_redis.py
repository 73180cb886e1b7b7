"""Rate limits on a real Redis: GCRA exactness, one count shared by two OS processes, failure.

Redis comes from FRONTDESK_TEST_REDIS_URL (default 127.0.0.1:6379). When it is unreachable the
tests that need it are skipped locally, and fail when FRONTDESK_TEST_REQUIRE_SERVICES=1 (CI).
Every test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from frontdesk.security.ratelimit import (
    RateLimiter,
    RateLimitUnavailable,
    RedisRateLimitStore,
    parse_rate,
    retry_after_header,
)

REDIS_URL = os.environ.get("FRONTDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("FRONTDESK_TEST_REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parents[2]
TEN_PER_MINUTE = parse_rate("10/minute", burst=20)


@pytest.fixture
async def client() -> AsyncIterator[redis.Redis]:
    client = redis.from_url(REDIS_URL, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        await asyncio.wait_for(client.ping(), 2)
    except (redis.RedisError, OSError, TimeoutError) as exc:
        await client.aclose()
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis is required in CI but unreachable: {exc!r}")
        pytest.skip(f"Redis unavailable: {exc!r}")
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(client: redis.Redis) -> AsyncIterator[str]:
    prefix = f"fd:test:rl:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


async def test_burst_of_30_lets_20_through(client: redis.Redis, prefix: str) -> None:
    store = RedisRateLimitStore(client, prefix)
    decisions = [await store.hit("visitor:v1", TEN_PER_MINUTE) for _ in range(30)]
    assert [d.allowed for d in decisions] == [True] * 20 + [False] * 10
    assert [d.remaining for d in decisions[:20]] == list(range(19, -1, -1))
    refused = decisions[20]
    assert refused.remaining == 0
    assert 5.9 < refused.retry_after_s <= 6.0  # 6 s less the time the 20 hits took
    assert 119.9 < refused.reset_after_s <= 120.0
    assert retry_after_header(refused) == "6"
    assert 119_000 < await client.pttl(f"{prefix}visitor:v1") <= 120_000


async def test_tat_is_stored_to_the_microsecond(client: redis.Redis, prefix: str) -> None:
    await RedisRateLimitStore(client, prefix).hit("k", TEN_PER_MINUTE)
    seconds, micros = await client.time()
    stored = await client.get(f"{prefix}k")
    assert stored is not None and stored.isdigit()  # not Lua's 14-digit "1.7e+15"
    assert abs(int(stored) - (seconds * 1_000_000 + micros + 6_000_000)) < 1_000_000


async def test_cost(client: redis.Redis, prefix: str) -> None:
    store = RedisRateLimitStore(client, prefix)
    decisions = [await store.hit("k", TEN_PER_MINUTE, cost=5) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True] * 4 + [False]
    assert [d.remaining for d in decisions[:4]] == [15, 10, 5, 0]
    assert 29.9 < decisions[4].retry_after_s <= 30.0


async def test_refills_on_redis_time(client: redis.Redis, prefix: str) -> None:
    store = RedisRateLimitStore(client, prefix)
    rate = parse_rate("20/second", burst=1)
    assert (await store.hit("k", rate)).allowed
    refused = await store.hit("k", rate)
    assert not refused.allowed
    assert 0 < refused.retry_after_s <= 0.05
    await asyncio.sleep(refused.retry_after_s + 0.01)
    assert (await store.hit("k", rate)).allowed


HITTER = """
import asyncio, sys, time
import redis.asyncio as redis
from frontdesk.security.ratelimit import RedisRateLimitStore, parse_rate

async def main(url, prefix):
    client = redis.from_url(url)
    store = RedisRateLimitStore(client, prefix)
    rate = parse_rate("10/minute", burst=20)
    await asyncio.gather(*(client.ping() for _ in range(15)))  # 15 open connections
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    await asyncio.sleep(start_at - time.time())

    async def hit(i):
        await asyncio.sleep(i * 0.003)  # spread over ~45 ms so the processes interleave
        return await store.hit("visitor:v1", rate)

    decisions = await asyncio.gather(*(hit(i) for i in range(15)))
    print(sum(d.allowed for d in decisions), flush=True)
    await client.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_two_processes_share_one_count(client: redis.Redis, prefix: str) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HITTER,
            REDIS_URL,
            prefix,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert await asyncio.wait_for(process.stdout.readline(), 10) == b"ready\n"
        start_at = f"{time.time() + 0.2}\n".encode()  # both start at once
        outputs = await asyncio.wait_for(
            asyncio.gather(*(process.communicate(start_at) for process in processes)), 10
        )
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert [process.returncode for process in processes] == [0, 0]
    allowed = [int(stdout) for stdout, _ in outputs]
    assert sum(allowed) == 20, allowed
    after = await RedisRateLimitStore(client, prefix).hit("visitor:v1", TEN_PER_MINUTE)
    assert not after.allowed
    assert 5.0 < after.retry_after_s <= 6.0


def unreachable(*, client_retries: bool = False) -> redis.Redis:
    if client_retries:  # redis-py's default: ten retries with backoff, seconds in all
        return redis.Redis(host="127.0.0.1", port=1)
    return redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))


async def test_unreachable_redis_raises() -> None:
    client = unreachable()
    try:
        with pytest.raises(RateLimitUnavailable):
            await RedisRateLimitStore(client).hit("k", TEN_PER_MINUTE)
    finally:
        await client.aclose()


async def test_unreachable_redis_answers_within_the_timeout() -> None:
    client = unreachable(client_retries=True)
    try:
        started = time.monotonic()
        with pytest.raises(RateLimitUnavailable):
            await RedisRateLimitStore(client, timeout_s=0.2).hit("k", TEN_PER_MINUTE)
        assert time.monotonic() - started < 1
    finally:
        await client.aclose()


async def test_limiter_fails_open_when_redis_is_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = unreachable()
    limiter = RateLimiter(RedisRateLimitStore(client))
    try:
        decisions = [await limiter.check("visitor", "v1", TEN_PER_MINUTE) for _ in range(30)]
    finally:
        await client.aclose()
    assert all(decision.allowed for decision in decisions)
    warnings = [r for r in caplog.records if r.name == "frontdesk.security.ratelimit"]
    assert len(warnings) == 1

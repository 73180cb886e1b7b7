"""Breaker state shared through Redis: what one process learns, the others know."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from frontdesk.responders.base import ResponderError
from frontdesk.responders.breaker import CircuitBreaker, RedisBreakerStore

REDIS_URL = os.environ.get("FRONTDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def clients() -> AsyncIterator[tuple[Redis, Redis]]:
    first, second = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    try:
        await first.ping()
    except Exception as exc:
        if os.environ.get("FRONTDESK_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required in CI: {exc!r}")
        pytest.skip(f"Redis unavailable: {exc!r}")
    yield first, second
    await first.aclose()
    await second.aclose()


async def test_two_processes_share_one_circuit(clients: tuple[Redis, Redis]) -> None:
    name = f"test-{uuid.uuid4().hex}"
    prefix = "fd:test:cb:"
    a = CircuitBreaker(name, RedisBreakerStore(clients[0], prefix), failure_threshold=4, open_s=0.5)
    b = CircuitBreaker(name, RedisBreakerStore(clients[1], prefix), failure_threshold=4, open_s=0.5)
    opened = [await a.record_failure(False), await b.record_failure(False)]
    opened += [await a.record_failure(False), await b.record_failure(False)]
    assert opened == [False, False, False, True]
    with pytest.raises(ResponderError) as refused:
        await a.before_call()
    assert refused.value.kind == "circuit_open"
    await asyncio.sleep(0.6)
    probes = await asyncio.gather(a.before_call(), b.before_call(), return_exceptions=True)
    assert sum(1 for p in probes if p is True) == 1  # exactly one process probes
    await a.record_success(True)
    assert await b.state() == "closed"
    await clients[0].delete(
        *[k async for k in clients[0].scan_iter(f"{prefix}{name}*")] or ["none"]
    )

"""The responder chain's rules, with scripted in-process responders (no network here; the
upstream protocols are tested against the fake servers in tests/integration)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from frontdesk.responders.base import AnswerRequest, Delta, FinalAnswer, ResponderError
from frontdesk.responders.breaker import CircuitBreaker, MemoryBreakerStore
from frontdesk.responders.chain import GRACEFUL, INTERRUPTED, Link, ResponderChain, Timeouts

REQUEST = AnswerRequest("site", "conv", "vis", "question?", [], "en")


class Scripted:
    """Plays one script per call: a list of deltas, then 'final', or an error at some point."""

    def __init__(self, name: str, scripts: list[list[object]]) -> None:
        self.name = name
        self.scripts = scripts
        self.calls = 0

    async def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]:
        script = self.scripts[min(self.calls, len(self.scripts) - 1)]
        self.calls += 1
        text = ""
        for step in script:
            if isinstance(step, ResponderError):
                raise step
            if isinstance(step, float):
                await asyncio.sleep(step)
            elif step == "final":
                yield FinalAnswer(text, meta={"responder": self.name})
                return
            else:
                text += str(step)
                yield Delta(str(step))


async def run(chain: ResponderChain) -> tuple[list[str], FinalAnswer]:
    deltas, final = [], None
    async for item in chain.answer(REQUEST):
        if isinstance(item, Delta):
            deltas.append(item.text)
        else:
            final = item
    assert final is not None
    return deltas, final


def link(responder: Scripted, **kwargs: object) -> Link:
    return Link(
        responder, kwargs.pop("breaker", None), kwargs.pop("timeouts", Timeouts()), **kwargs
    )  # type: ignore[arg-type]


async def test_retries_before_the_first_token() -> None:
    flaky = Scripted(
        "up", [[ResponderError("server_error", "500")]] * 2 + [["Hello", " there", "final"]]
    )
    failures: list[str] = []

    async def on_failure(name: str, error: ResponderError) -> None:
        failures.append(error.kind)

    deltas, final = await run(ResponderChain([link(flaky)], on_failure=on_failure))
    assert flaky.calls == 3 and failures == ["server_error", "server_error"]
    assert deltas == ["Hello", " there"] and final.text == "Hello there"


async def test_no_retry_after_partial_output_and_no_duplicated_text() -> None:
    breaks = Scripted("up", [["Part one", ResponderError("protocol", "dropped")]])
    backup = Scripted("backup", [["Backup answer", "final"]])
    deltas, final = await run(ResponderChain([link(breaks), link(backup)]))
    assert breaks.calls == 1
    marker = INTERRUPTED["en"]
    assert deltas == ["Part one", marker, "Backup answer"]
    assert final.text == "Part one" + marker + "Backup answer"
    assert final.text.count("Part one") == 1
    assert final.meta["interrupted"] == [{"responder": "up", "chars": 8}]
    assert final.meta["responder"] == "backup"


async def test_everything_fails_gives_the_graceful_reply() -> None:
    down = Scripted("up", [[ResponderError("auth", "401")]])
    deltas, final = await run(ResponderChain([link(down)]))
    assert deltas == [GRACEFUL["en"]]
    assert down.calls == 1  # auth errors are not retried
    assert final.text == GRACEFUL["en"] and final.meta["lead_offer"] is True
    assert final.meta["failed"] == [{"responder": "up", "kind": "auth"}]


async def test_first_token_timeout_falls_back_quickly() -> None:
    slow = Scripted("up", [[5.0, "late", "final"]])
    backup = Scripted("backup", [["Quick", "final"]])
    chain = ResponderChain(
        [link(slow, timeouts=Timeouts(first_token_s=0.2), retries=0), link(backup)]
    )
    started = time.monotonic()
    _, final = await run(chain)
    assert final.text == "Quick" and time.monotonic() - started < 1.2


async def test_total_timeout_after_partial_output() -> None:
    stalls = Scripted("up", [["Start", 5.0, "final"]])
    backup = Scripted("backup", [["Rest", "final"]])
    chain = ResponderChain([link(stalls, timeouts=Timeouts(total_s=0.3)), link(backup)])
    _, final = await run(chain)
    assert final.text == "Start" + INTERRUPTED["en"] + "Rest"


@pytest.mark.parametrize(("retry_after", "calls"), [(0.05, 2), (30.0, 1)])
async def test_retry_after_is_honoured_when_short(retry_after: float, calls: int) -> None:
    limited = Scripted(
        "up", [[ResponderError("rate_limited", "429", retry_after_s=retry_after)], ["ok", "final"]]
    )
    backup = Scripted("backup", [["backup", "final"]])
    _, final = await run(ResponderChain([link(limited), link(backup)]))
    assert limited.calls == calls
    assert final.text == ("ok" if calls == 2 else "backup")


async def test_breaker_opens_probes_and_closes() -> None:
    clock = [0.0]
    store = MemoryBreakerStore(clock=lambda: clock[0])
    breaker = CircuitBreaker("up", store, failure_threshold=3, window_s=60, open_s=30)
    down = Scripted("up", [[ResponderError("server_error", "500")]])
    backup = Scripted("backup", [["backup", "final"]])
    opened: list[str] = []

    async def on_opened(name: str) -> None:
        opened.append(name)

    chain = ResponderChain(
        [link(down, breaker=breaker, retries=0), link(backup)], on_circuit_opened=on_opened
    )
    for _ in range(3):
        await run(chain)
    assert opened == ["up"] and await breaker.state() == "open"
    calls = down.calls
    _, final = await run(chain)  # open: skipped at once
    assert down.calls == calls and final.text == "backup"

    clock[0] += 31  # half-open: one probe
    assert await breaker.state() == "half_open"
    down.scripts = [["recovered", "final"]]
    _, final = await run(chain)
    assert final.text == "recovered" and await breaker.state() == "closed"


async def test_failed_probe_reopens() -> None:
    clock = [0.0]
    breaker = CircuitBreaker(
        "up", MemoryBreakerStore(clock=lambda: clock[0]), failure_threshold=1, open_s=10
    )
    down = Scripted("up", [[ResponderError("server_error", "500")]])
    chain = ResponderChain([link(down, breaker=breaker, retries=0)])
    await run(chain)
    assert await breaker.state() == "open"
    clock[0] += 11
    await run(chain)  # the probe fails
    assert await breaker.state() == "open"


class CountingStore(MemoryBreakerStore):
    """The memory store, counting what a Redis store would make round trips of."""

    def __init__(self) -> None:
        super().__init__()
        self.round_trips = 0

    async def get_ints(self, *keys: str) -> list[int]:
        self.round_trips += 1
        return await super().get_ints(*keys)

    async def incr(self, key: str, ttl_s: float) -> int:
        self.round_trips += 1
        return await super().incr(key, ttl_s)

    async def delete(self, *keys: str) -> None:
        self.round_trips += 1
        await super().delete(*keys)


async def test_a_closed_circuit_costs_one_store_round_trip_and_a_success_clears_failures() -> None:
    store = CountingStore()
    breaker = CircuitBreaker("up", store, failure_threshold=3)
    flaky = Scripted("up", [["fine", "final"]])
    chain = ResponderChain([link(flaky, breaker=breaker, retries=0)])
    await run(chain)
    assert store.round_trips == 1  # the state, read in one go; nothing to clear

    flaky.scripts = [[ResponderError("server_error", "500")], ["fine", "final"]]
    flaky.calls = 0
    await run(chain)  # fails: the graceful reply
    assert await store.get_int("up:failures") == 1
    _, final = await run(chain)
    assert final.text == "fine" and await store.get_int("up:failures") == 0

"""`start_eagerly`: a coroutine runs in the caller's turn; one that has to wait is finished by
whoever awaits its rest, with the results, exceptions and cancellation it would have had."""

from __future__ import annotations

import asyncio

import pytest

from frontdesk.realtime.eager import Rest, start_eagerly


async def test_a_coroutine_that_never_waits_completes_inline() -> None:
    done: list[str] = []

    async def write() -> None:
        done.append("written")

    assert start_eagerly(write()) is None
    assert done == ["written"]


async def test_a_coroutine_that_waits_is_finished_by_its_rest() -> None:
    gate = asyncio.Event()
    steps: list[str] = []

    async def write() -> None:
        steps.append("before")
        await gate.wait()
        await asyncio.sleep(0)  # a bare yield on the way
        steps.append("after")

    rest = start_eagerly(write())
    assert rest is not None and steps == ["before"]
    task = asyncio.create_task(_finish(rest))
    await asyncio.sleep(0.01)
    assert steps == ["before"] and not task.done()
    gate.set()
    await asyncio.wait_for(task, 1)
    assert steps == ["before", "after"]


async def test_errors_and_cancellation_reach_the_awaiting_task() -> None:
    gate = asyncio.Event()

    async def fails() -> None:
        await gate.wait()
        raise ConnectionResetError

    with pytest.raises(ValueError):
        start_eagerly(_raises_now())
    rest = start_eagerly(fails())
    assert rest is not None
    task = asyncio.create_task(_finish(rest))
    gate.set()
    with pytest.raises(ConnectionResetError):
        await task

    cleaned: list[str] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("finally ran")

    rest = start_eagerly(waits_forever())
    assert rest is not None
    task = asyncio.create_task(_finish(rest))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally ran"]


async def _finish(rest: Rest) -> None:
    await rest


async def _raises_now() -> None:
    raise ValueError

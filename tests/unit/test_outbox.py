from __future__ import annotations

import asyncio
import json

from frontdesk.realtime.outbox import Outbox


async def test_deltas_are_coalesced_and_never_reordered() -> None:
    written: list[dict] = []  # type: ignore[type-arg]

    async def write(text: str) -> None:
        written.append(json.loads(text))

    outbox = Outbox(write, flush_ms=20)
    for piece in ("a", "b", "c"):
        outbox.send({"type": "delta", "message_id": "m1", "text": piece})
    await asyncio.sleep(0.05)
    outbox.send({"type": "delta", "message_id": "m1", "text": "d"})
    outbox.send({"type": "message", "message": {"id": "m1"}})  # flushes "d" first
    await outbox.drain()
    assert written == [
        {"type": "delta", "message_id": "m1", "text": "abc"},
        {"type": "delta", "message_id": "m1", "text": "d"},
        {"type": "message", "message": {"id": "m1"}},
    ]
    await outbox.stop()


async def test_slow_consumer_overflows_and_others_are_unaffected() -> None:
    stuck = asyncio.Event()
    overflowed = asyncio.Event()

    async def blocked_write(_: str) -> None:
        await stuck.wait()  # a client that stopped reading

    async def on_overflow() -> None:
        overflowed.set()

    slow = Outbox(blocked_write, max_bytes=10_000, on_overflow=on_overflow)
    fast_written: list[str] = []

    async def fast_write(text: str) -> None:
        fast_written.append(text)

    fast = Outbox(fast_write)
    for i in range(200):
        slow.send({"type": "message", "message": {"seq": i, "text": "x" * 100}})
        fast.send({"type": "message", "message": {"seq": i}})
    await asyncio.wait_for(overflowed.wait(), 1)
    assert slow.overflowed and slow.closed
    await fast.drain()
    assert len(fast_written) == 200
    await slow.stop()
    await fast.stop()


async def test_frames_are_written_at_once_without_a_task() -> None:
    written: list[str] = []

    async def write(text: str) -> None:
        written.append(text)

    outbox = Outbox(write)
    tasks_before = len(asyncio.all_tasks())
    for i in range(3):
        outbox.send({"type": "message", "message": {"seq": i}})
        assert len(written) == i + 1  # in the caller's turn, before any await
    assert len(asyncio.all_tasks()) == tasks_before
    assert outbox.frames_sent == 3
    await outbox.stop()


async def test_backpressure_keeps_order_and_ends_its_drain_task() -> None:
    writable = asyncio.Event()
    writable.set()
    written: list[int] = []

    async def write(text: str) -> None:
        await writable.wait()  # like the server's send while the transport is paused
        written.append(json.loads(text)["n"])

    outbox = Outbox(write)
    outbox.send({"type": "x", "n": 0})
    writable.clear()  # the client stops reading
    for n in range(1, 5):
        outbox.send({"type": "x", "n": n})
    assert written == [0] and outbox.queued_bytes > 0
    writable.set()
    await outbox.drain(1.0)
    assert written == [0, 1, 2, 3, 4] and outbox.queued_bytes == 0
    assert outbox._drain is None  # back to writing at once
    outbox.send({"type": "x", "n": 5})
    assert written[-1] == 5
    await outbox.stop()


async def test_a_failing_write_closes_the_outbox() -> None:
    async def gone(_: str) -> None:
        raise ConnectionResetError

    outbox = Outbox(gone)
    outbox.send({"type": "pong"})
    assert outbox.closed
    outbox.send({"type": "pong"})  # ignored, no error
    await outbox.stop()

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

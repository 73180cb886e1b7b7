"""One timer for many deadlines: each fires once, after its time, and moved or cleared ones
don't; nothing stays armed when no deadline is left."""

from __future__ import annotations

import asyncio
import time

from frontdesk.realtime.deadlines import Deadlines


class Owner:
    def __init__(self) -> None:
        self.expired_at: list[float] = []

    def expired(self) -> None:
        self.expired_at.append(time.time())


async def test_deadlines_fire_once_after_their_time() -> None:
    deadlines = Deadlines()
    soon, later, cleared, moved = Owner(), Owner(), Owner(), Owner()
    start = time.time()
    deadlines.set(soon, start + 0.2)
    deadlines.set(later, start + 1.2)
    key = deadlines.set(cleared, start + 0.2)
    deadlines.clear(cleared, key)
    key = deadlines.set(moved, start + 0.2)
    deadlines.set(moved, start + 2.2, previous=key)  # a fresh token came first
    assert len(deadlines) == 3
    await asyncio.sleep(1.3)  # each deadline is met within a second after it
    assert len(soon.expired_at) == 1 and soon.expired_at[0] >= start + 0.2
    assert cleared.expired_at == [] and moved.expired_at == []
    await asyncio.sleep(1.0)
    assert len(later.expired_at) == 1 and later.expired_at[0] >= start + 1.2
    await asyncio.sleep(1.0)
    assert len(moved.expired_at) == 1 and moved.expired_at[0] >= start + 2.2
    assert len(deadlines) == 0 and deadlines._timer is None
    await asyncio.sleep(1.1)
    assert [len(o.expired_at) for o in (soon, later, moved)] == [1, 1, 1]  # never twice
    assert cleared.expired_at == []


async def test_clearing_the_last_deadline_disarms_the_timer() -> None:
    deadlines = Deadlines()
    owner = Owner()
    key = deadlines.set(owner, time.time() + 60)
    assert deadlines._timer is not None
    deadlines.clear(owner, key)
    assert deadlines._timer is None and len(deadlines) == 0

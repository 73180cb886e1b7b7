"""Deadlines for many connections with one timer: when each visitor's access token expires.

A timer per connection costs an event-loop handle, a heap entry and a bound method for each of
tens of thousands of idle connections. Here connections are kept in one-second buckets (by the
wall-clock second their deadline falls in) and one timer, armed only while a bucket exists,
wakes up once per due second and calls `expired()` on every connection of the buckets that are
due. A connection is in at most one bucket: `set` moves it, `clear` takes it out. Deadlines are
met to within a second (never early).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Protocol

log = logging.getLogger(__name__)


class Expiring(Protocol):
    def expired(self) -> None: ...


class Deadlines:
    def __init__(self) -> None:
        self._buckets: dict[int, set[Expiring]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def set(self, owner: Expiring, at: float, previous: int | None = None) -> int:
        """Call `owner.expired()` once `at` (epoch seconds) has passed; returns the bucket key to
        pass as `previous` (to move the deadline) or to `clear`."""
        if previous is not None:
            self.clear(owner, previous)
        key = math.ceil(at)
        self._buckets.setdefault(key, set()).add(owner)
        if self._timer is None or key < self._timer_at:
            self._arm(key)
        return key

    def clear(self, owner: Expiring, key: int) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.discard(owner)
            if not bucket:
                del self._buckets[key]
        if not self._buckets and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, key: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, key - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)
        self._timer_at = key

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        for key in sorted(k for k in self._buckets if k <= now):
            for owner in self._buckets.pop(key):
                try:
                    owner.expired()
                except Exception:
                    log.exception("deadline callback failed")
        if self._buckets:
            self._arm(min(self._buckets))

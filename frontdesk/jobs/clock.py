"""The worker's clock: real time, or time a test holds and moves (an hour passes in a second).

One instance is shared by the worker, webhook fan-out and delivery, so moving it moves them all.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from frontdesk.models import utcnow


class Clock:
    def __init__(self) -> None:
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        return self._frozen if self._frozen is not None else utcnow()

    def freeze(self, at: datetime | None = None) -> None:
        self._frozen = at or utcnow()

    def advance(self, seconds: float) -> None:
        self._frozen = self.now() + timedelta(seconds=seconds)

    def thaw(self) -> None:
        self._frozen = None

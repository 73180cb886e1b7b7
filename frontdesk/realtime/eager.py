"""Run a coroutine at once, in the caller's turn of the event loop, and hand it to a task only if
it has to wait.

Writing a WebSocket frame is a coroutine (the ASGI `send`) that almost never waits: the server
writes to the transport and returns. Giving every frame a task of its own would cost a task per
frame and per subscriber, and a queue hop; running it inline costs nothing, but the rare frame
that does wait (the transport pushed back because the client is not reading) must then be
finished somewhere. `start_eagerly` steps the coroutine once; if it completed, that is all; if
it suspended, the returned `Rest` finishes it when awaited from a task. (Python 3.12's eager
tasks do the same for whole tasks; FrontDesk runs on 3.11 too.)
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


class Rest:
    """The remainder of a coroutine that suspended outside any task: awaiting it lets the
    awaiting task wait on what the coroutine waits on, and resumes it, until it returns."""

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, None]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                yield waiting_on  # the task waits on the coroutine's future (or just yields)
            except BaseException as exc:  # cancelled while waiting: the coroutine decides
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                waiting_on = coro.send(None)
            except StopIteration:
                return


def start_eagerly(coro: Coroutine[Any, Any, None]) -> Rest | None:
    """Run `coro` until it returns (None) or first suspends (its `Rest`). Exceptions raised
    before it suspends propagate to the caller."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return Rest(coro, waiting_on)

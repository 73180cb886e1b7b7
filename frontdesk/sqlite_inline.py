"""SQLite driven from the event loop: an aiosqlite-shaped connection that runs each statement at
once in the calling thread, for SQLAlchemy's `sqlite+aiosqlite` dialect.

Why: aiosqlite runs every statement on a worker thread and hands the result back through the
event loop. On a local WAL database a statement takes tens of microseconds, but the hand-off
(queue, thread wake-up, GIL switch, `call_soon_threadsafe`) costs several hundred microseconds of
CPU, and a chat turn issues dozens of statements: the hops cost more than the queries. Running the
statement in the loop is an order of magnitude cheaper (ADR 0022).

What keeps the loop from blocking: the connection's `busy_timeout` is 0, and a statement that
meets another process's lock (`database is locked`) is retried after an asynchronous sleep until
`busy_timeout_s` has passed, so waiting for a lock never stops the loop. Within one process the
writer is a pool of one connection, so writers queue in the pool, not on the lock. What still
runs in the loop is the query itself, which is what SQLite does fast: point reads and small
writes. `FRONTDESK_SQLITE_DRIVER=thread` goes back to aiosqlite's threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

LOCKED_RETRY_S = 0.002  # first retry; doubles up to LOCKED_RETRY_MAX_S
LOCKED_RETRY_MAX_S = 0.05


def _locked(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "database is locked" in text or "database table is locked" in text


async def retry_locked(call: Callable[[], Any], busy_timeout_s: float) -> Any:
    """Run `call`; while another process holds the database lock, try again after an
    asynchronous sleep (doubling, capped) until `busy_timeout_s` has passed."""
    deadline = time.monotonic() + busy_timeout_s
    delay = LOCKED_RETRY_S
    while True:
        try:
            return call()
        except sqlite3.OperationalError as error:
            if not _locked(error) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, LOCKED_RETRY_MAX_S)


class InlineCursor:
    """aiosqlite's Cursor API over a sqlite3 cursor, run in the calling thread."""

    __slots__ = ("_busy_timeout_s", "_cursor")

    def __init__(self, cursor: sqlite3.Cursor, busy_timeout_s: float) -> None:
        self._cursor = cursor
        self._busy_timeout_s = busy_timeout_s

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    def __await__(self) -> Any:  # `await connection.cursor()` as with aiosqlite
        async def itself() -> InlineCursor:
            return self

        return itself().__await__()

    async def _retrying(self, call: Callable[[], Any]) -> Any:
        return await retry_locked(call, self._busy_timeout_s)

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        if parameters is None:
            await self._retrying(lambda: self._cursor.execute(sql))
        else:
            await self._retrying(lambda: self._cursor.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        rows = list(parameters)  # the retry must be able to run it again
        await self._retrying(lambda: self._cursor.executemany(sql, rows))
        return self

    async def executescript(self, script: str) -> InlineCursor:
        await self._retrying(lambda: self._cursor.executescript(script))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    @property
    def description(self) -> Any:
        return self._cursor.description


class _ImmediateQueue:
    """Stands in for aiosqlite's request queue, which SQLAlchemy uses directly to set the
    isolation level: the function runs at once and its future is resolved."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:
            future.set_exception(error)


class InlineConnection:
    """aiosqlite's Connection API over a sqlite3 connection, run in the calling thread."""

    def __init__(self, connection: sqlite3.Connection, busy_timeout_s: float) -> None:
        self._conn_: sqlite3.Connection | None = connection
        self._busy_timeout_s = busy_timeout_s
        self._tx = _ImmediateQueue()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._conn_ is None:
            raise ValueError("no active connection")
        return self._conn_

    @property
    def _connection(self) -> sqlite3.Connection | None:  # what SQLAlchemy checks for "open"
        return self._conn_

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection itself, for work that runs as plain SQL (ADR 0025)."""
        return self._conn

    @property
    def busy_timeout_s(self) -> float:
        return self._busy_timeout_s

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor(), self._busy_timeout_s)

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        await InlineCursor(self._conn.cursor(), self._busy_timeout_s)._retrying(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._conn_ is not None:
            self._conn_.close()
            self._conn_ = None

    def stop(self) -> None:
        if self._conn_ is not None:
            self._conn_.close()
            self._conn_ = None

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


def inline_connector(path: str, busy_timeout_s: float) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine`: opens `path` for use from the loop."""

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(path, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=0")  # waits happen in `_retrying`, not here
        return InlineConnection(connection, busy_timeout_s)

    return connect

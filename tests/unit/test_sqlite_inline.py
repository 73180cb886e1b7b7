"""SQLite from the event loop (ADR 0022): statements run in the loop, and waiting for another
process's lock is an asynchronous retry that never blocks the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from frontdesk.config import load_settings
from frontdesk.db import Database
from frontdesk.migrate import upgrade
from frontdesk.sqlite_inline import inline_connector


async def ticks_while(awaitable: object, interval: float = 0.01) -> tuple[object, int]:
    """Run `awaitable`, counting how often another task got the loop meanwhile."""
    count = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal count
        while not done.is_set():
            await asyncio.sleep(interval)
            count += 1

    ticker = asyncio.create_task(tick())
    try:
        result = await awaitable  # type: ignore[misc]
    finally:
        done.set()
        await ticker
    return result, count


async def test_a_write_waits_for_another_process_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    settings = load_settings(data_dir=tmp_path, secret_key="k" * 40, sqlite_driver="inline")
    db = Database(settings)
    await upgrade(db)
    path = str(tmp_path / "frontdesk.db")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    other.execute("INSERT INTO system_meta (key, value) VALUES ('held', '1')")

    async def write() -> str:
        async with db.session_scope() as session:
            await session.execute(text("INSERT INTO system_meta (key, value) VALUES ('mine', '2')"))
        return "written"

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        other.execute("COMMIT")

    started = time.monotonic()
    releaser = asyncio.create_task(release_later())
    result, ticks = await ticks_while(write())
    await releaser
    assert result == "written" and time.monotonic() - started >= 0.29
    assert ticks >= 10  # the loop ran other work all along
    async with db.read_scope() as session:
        keys = (await session.execute(text("SELECT key FROM system_meta"))).scalars().all()
    assert {"held", "mine"} <= set(keys)
    other.close()
    await db.dispose()


async def test_a_lock_held_too_long_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (v INTEGER)")
    setup.execute("BEGIN IMMEDIATE")
    connection = await inline_connector(path, busy_timeout_s=0.2)()
    connection._conn.isolation_level = None
    cursor = connection.cursor()
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await cursor.execute("BEGIN IMMEDIATE")
    assert 0.2 <= time.monotonic() - started < 1.0
    setup.execute("ROLLBACK")
    await cursor.execute("BEGIN IMMEDIATE")  # free now
    await cursor.execute("INSERT INTO t VALUES (?)", (1,))
    await connection.commit()
    assert await (await connection.execute("SELECT count(*) FROM t")).fetchone() == (1,)
    await connection.close()
    setup.close()


async def test_core_connections_keep_the_loop_and_sessions_let_it_go(tmp_path: Path) -> None:
    """Uncontended, a Core unit of work on the inline driver (`Database.connect`, what the turn's
    message store and the worker's checks use) never yields to the loop: the writer's single
    connection is back in its pool as the block ends (ADR 0026), not one loop iteration later,
    when a close in a shielded task would run. Sessions keep yielding between units of work, which
    code running unit after unit relies on to let I/O through."""
    settings = load_settings(data_dir=tmp_path, secret_key="k" * 40, sqlite_driver="inline")
    db = Database(settings)
    await upgrade(db)

    async def core_units() -> int:
        for i in range(20):
            async with db.connect(db.writer) as conn, conn.begin():
                await conn.execute(
                    text("INSERT INTO system_meta (key, value) VALUES (:k, '1')"), {"k": f"k{i}"}
                )
            async with db.connect(db.reader) as conn:
                await conn.execute(text("SELECT count(*) FROM system_meta"))
        return db.writer.sync_engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]

    checked_out, ticks = await ticks_while(core_units(), interval=0)
    assert checked_out == 0
    assert ticks == 0

    async def session_units() -> None:
        for _ in range(5):
            async with db.session_scope() as session:
                await session.execute(text("SELECT 1"))

    _, ticks = await ticks_while(session_units(), interval=0)
    assert ticks >= 5
    await db.dispose()

"""The database: engines, the unit of work, and publication of events after commit.

`Database.session_scope()` is the one place that commits. Actions record events into the session
(`events.recorder.record_event`); the scope publishes them to the broker only after the
transaction has committed, so a rolled-back change emits nothing. `Database.read_scope()` is for
queries and never writes.

SQLite runs in WAL mode. Writers take the database lock up front (`BEGIN IMMEDIATE`) through a
single pooled connection, so concurrent writers in one process queue fairly in asyncio instead of
spinning in SQLite's busy handler; readers use their own pool and never block on writers.

Releasing a connection: SQLAlchemy's `async with` exits close connections and sessions in a new
task, shielded from cancellation (a close that awaits I/O must not be cut short and leak the
connection). That task runs one loop iteration later, and the caller resumes one more later
still: the connection stays checked out meanwhile, and under chat load the turn's message stores
waited behind other work for those hops on the writer's single connection (ADR 0026). On SQLite
driven from the loop a close never awaits anything, so nothing can cancel it midway:
`Database.connect` closes its Core connection in place there. Sessions keep SQLAlchemy's close,
which also yields to the loop between units of work; code that runs unit after unit (a fan-out
catching up, a batch of deliveries) relies on that to let I/O through, and webhook throughput
halved without it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from frontdesk.config import Settings
from frontdesk.sqlite_inline import inline_connector

PENDING_EVENTS = "pending_events"
EVENT_LOCK = 0x4644_4556  # "FDEV": the advisory lock that orders event offsets


class EventPublisher(Protocol):
    """Receives the events of a committed transaction (the broker side of the app)."""

    async def publish_events(self, events: list[Any]) -> None: ...


BUSY_TIMEOUT_S = 10.0


def _sqlite_pragmas(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" hook decide how a transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def _thread_busy_timeout(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    # On aiosqlite's threads a lock wait blocks only that thread: let SQLite itself wait.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cursor.close()


def _make_sqlite_engine(url: str, *, writer: bool, pool_size: int, driver: str) -> AsyncEngine:
    options: dict[str, Any] = {}
    if driver == "inline":  # ADR 0022: statements run in the loop; lock waits are async sleeps
        options["async_creator"] = inline_connector(
            make_url(url).database or ":memory:", BUSY_TIMEOUT_S
        )
    engine = create_async_engine(
        url,
        pool_size=1 if writer else pool_size,
        max_overflow=0,
        pool_timeout=60,
        **options,
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    if driver != "inline":
        event.listen(engine.sync_engine, "connect", _thread_busy_timeout)

    begin_sql = "BEGIN IMMEDIATE" if writer else "BEGIN"

    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin_sql)

    event.listen(engine.sync_engine, "begin", _begin)
    return engine


class Database:
    """Engines and session factories for one app (or one CLI command)."""

    def __init__(self, settings: Settings, publisher: EventPublisher | None = None) -> None:
        self.settings = settings
        self.url = settings.resolved_database_url
        self.publisher = publisher
        if self.url.startswith("sqlite"):
            settings.ensure_data_dir()
            driver = settings.sqlite_driver
            self.writer = _make_sqlite_engine(self.url, writer=True, pool_size=1, driver=driver)
            self.reader = _make_sqlite_engine(
                self.url, writer=False, pool_size=settings.db_pool_size, driver=driver
            )
        else:
            self.writer = create_async_engine(
                self.url, pool_size=settings.db_pool_size, max_overflow=10, pool_pre_ping=True
            )
            self.reader = self.writer
        self._write_sessions = async_sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.reader, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    @property
    def sqlite_inline(self) -> bool:
        """SQLite run from the event loop (ADR 0022): the writer's connection can take plain
        SQL without a hand-off (ADR 0025)."""
        return self.dialect == "sqlite" and self.settings.sqlite_driver == "inline"

    @asynccontextmanager
    async def connect(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """A Core connection from `engine` (the writer or the reader) for a short unit of work,
        released on exit (in place on the inline driver; see above)."""
        if not self.sqlite_inline:
            async with engine.connect() as conn:
                yield conn
            return
        conn = await engine.connect().start()
        try:
            yield conn
        finally:
            await conn.close()

    @asynccontextmanager
    async def session_scope(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on error, then publish its events."""
        async with self._write_sessions() as session:
            session.info[PENDING_EVENTS] = []
            try:
                yield session
                await self._write_events(session)
                await session.commit()
            except BaseException:
                await session.rollback()
                session.info[PENDING_EVENTS] = []
                raise
            events = session.info.pop(PENDING_EVENTS, [])
        if events and self.publisher is not None:
            await self.publisher.publish_events(events)

    async def _write_events(self, session: AsyncSession) -> None:
        """Insert the recorded events last, so offsets follow commit order.

        On PostgreSQL a transaction-level advisory lock is held from here to the commit: offsets
        are taken and committed one transaction at a time, so a reader that has seen offset N
        will never later find a smaller offset appear. SQLite writers are serial already.

        The rows go in as one Core `INSERT … RETURNING offset` rather than through the ORM's
        unit of work (every chat turn writes two events; the flush machinery was most of their
        cost); the records stay plain objects that carry their offset for publication.
        """
        events = session.info.get(PENDING_EVENTS)
        if not events:
            return
        if self.dialect == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOCK})
        table = events[0].__table__
        rows = [
            {
                "id": e.id,
                "type": e.type,
                "at": e.at,
                "site_id": e.site_id,
                "actor": e.actor,
                "data": e.data,
            }
            for e in events
        ]
        stmt = table.insert().returning(table.c.offset, sort_by_parameter_order=True)
        conn = await session.connection()
        if len(rows) == 1:
            offsets = [(await conn.execute(stmt, rows[0])).scalar_one()]
        else:
            offsets = list((await conn.execute(stmt, rows)).scalars())
        for record, offset in zip(events, offsets, strict=True):
            record.offset = offset

    @asynccontextmanager
    async def read_scope(self) -> AsyncIterator[AsyncSession]:
        """A read-only session. Closing it ends the transaction without expiring what was read,
        so loaded objects stay usable after the scope."""
        async with self._read_sessions() as session:
            yield session

    async def ping(self) -> None:
        async with self.connect(self.reader) as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()

"""The job worker: claims due jobs, runs their handlers, retries with backoff, buries the dead.

Runs inside the app by default, or alone as `frontdesk worker`. Before claiming jobs it turns new
events into webhook deliveries (`webhooks.fanout`). It sleeps until the next poll or until a
commit wakes it through the broker's `jobs` channel, so work enqueued now starts now.

Claimed jobs run in the background while the loop goes on claiming, up to `concurrency` jobs in
flight: a slow job (a webhook receiver that takes its whole timeout) holds its own slot and
nothing else.

A handler is one of two shapes. A per-job handler returns None (done), or raises `Retry(at)` to
run again later, or `Permanent(reason)` to stop for good; any other exception is retried with
exponential backoff and jitter until the job's `max_attempts`, then the job is dead with the
reason kept. A `BatchHandler` receives every claimed job of its kind at once and closes each
claim itself (`queue.finish_many` in its own writes), so a batch costs one read and a few
writes instead of two per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar, runtime_checkable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.db import Database
from frontdesk.jobs import queue
from frontdesk.jobs.clock import Clock
from frontdesk.models import Job
from frontdesk.realtime.broker import Broker

log = logging.getLogger(__name__)

T = TypeVar("T")
# How long work that has happened keeps trying to record that it has, while the database is away.
DATABASE_PATIENCE_S = 20.0


class Retry(Exception):
    def __init__(self, at: datetime, reason: str = "") -> None:
        super().__init__(reason)
        self.at = at
        self.reason = reason


class Permanent(Exception):
    pass


Handler = Callable[[dict[str, Any], "WorkerContext"], Awaitable[None]]


@dataclass
class WorkerContext:
    worker: Worker
    job: Job
    finished: bool = False

    @property
    def clock(self) -> Clock:
        return self.worker.clock

    async def finish_in(self, session: AsyncSession) -> None:
        """Mark the job done inside the handler's own transaction (one commit, not two)."""
        self.finished = await queue.finish(session, self.job.id, self.worker.id, self.clock.now())


class BatchContext:
    """What a batch handler gets besides its jobs: the worker, and a way to hand slots back as
    soon as some of its jobs are closed (the rest are handed back when it returns)."""

    def __init__(self, worker: Worker, jobs: list[Job]) -> None:
        self.worker = worker
        self.jobs = jobs
        self.released = 0

    @property
    def clock(self) -> Clock:
        return self.worker.clock

    def closed(self, count: int) -> None:
        count = min(count, len(self.jobs) - self.released)
        self.released += count
        self.worker._release(count)


@runtime_checkable
class BatchHandler(Protocol):
    async def run_batch(self, jobs: list[Job], ctx: BatchContext) -> None: ...


async def patiently(
    work: Callable[[bool], Awaitable[T]], *, patience_s: float = DATABASE_PATIENCE_S
) -> T:
    """Runs `work`, and again while the database is unreachable (restarting, failing over, its
    connections cut), for up to `patience_s`. `work` is told whether this is a second try (a lost
    connection may have lost the answer to a commit that happened)."""
    deadline = time.monotonic() + patience_s
    pause, again = 0.1, False
    while True:
        try:
            return await work(again)
        except (DBAPIError, OSError) as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("waiting for the database: %s", type(exc).__name__)
            await asyncio.sleep(pause)
            pause, again = min(pause * 2, 1.0), True


def backoff(attempt: int, *, base_s: float = 2.0, cap_s: float = 3600.0) -> float:
    return float(min(cap_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2))  # noqa: S311


class Worker:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        handlers: dict[str, Handler | BatchHandler],
        *,
        clock: Clock | None = None,
        before_claim: Callable[[], Awaitable[int]] | None = None,
        lease_s: float = 60.0,
        batch: int = 100,
        poll_s: float = 1.0,
        concurrency: int = 400,
        coalesce_s: float = 0.05,
    ) -> None:
        self.db = db
        self.broker = broker
        self.handlers = handlers
        self.clock = clock or Clock()
        self.before_claim = before_claim
        self.lease_s = lease_s
        self.batch = batch
        self.poll_s = poll_s
        self.concurrency = concurrency
        self.coalesce_s = coalesce_s
        self.id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self.processed = 0
        self.alive = False

    async def start(self) -> None:
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(ready))
        await ready.wait()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        # Jobs cut short keep their lease and run again when it runs out (at least once).
        tasks = [t for t in (self._task, self._listener, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.alive = False

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _release(self, count: int) -> None:
        full = self._in_flight >= self.concurrency
        self._in_flight -= count
        if full:
            self._wake.set()  # room to claim again

    async def _listen(self, ready: asyncio.Event) -> None:
        async with self.broker.subscribe("jobs") as subscription:
            ready.set()
            async for _ in subscription:
                self._wake.set()

    async def _run(self) -> None:
        self.alive = True
        loop = asyncio.get_running_loop()
        while True:
            # Cleared before the pass, so a wake-up that arrives during it is not lost.
            self._wake.clear()
            started = loop.time()
            try:
                worked = await self._pass()
            except Exception:  # the database may be restarting: keep the worker alive
                log.warning("worker pass failed; retrying", exc_info=True)
                worked = 0
                await asyncio.sleep(self.poll_s)
            if not worked:
                # `asyncio.timeout`, not `wait_for`: on Python 3.11, `wait_for` can swallow a
                # cancellation that arrives as the wake-up does, and `stop()` then waits forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_s):
                        await self._wake.wait()
            # Every commit wakes the worker; under load, passes at most every `coalesce_s`
            # take what many commits left, instead of a pass (a dozen statements) per commit.
            rest = self.coalesce_s - (loop.time() - started)
            if rest > 0:
                await asyncio.sleep(rest)

    async def _pass(self) -> int:
        """Fan out new events, then claim as many due jobs as there is room for and start them
        without waiting for them."""
        fanned = await self.before_claim() if self.before_claim is not None else 0
        room = min(self.batch, self.concurrency - self._in_flight)
        if room <= 0:
            return fanned
        jobs = await self._claim(room)
        if jobs:
            self._in_flight += len(jobs)
            task = asyncio.create_task(self._run_jobs(jobs))
            self._running.add(task)
            task.add_done_callback(self._finished)
        return fanned + len(jobs)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The claims stay leased and are taken again when the lease runs out.
            log.warning("job batch failed", exc_info=task.exception())

    async def run_once(self) -> int:
        """One pass that waits for its jobs: fan out new events, then claim and run due jobs.
        Returns the work done."""
        fanned = await self.before_claim() if self.before_claim is not None else 0
        jobs = await self._claim(self.batch)
        if jobs:
            self._in_flight += len(jobs)
            await self._run_jobs(jobs)
        return fanned + len(jobs)

    async def _claim(self, limit: int) -> list[Job]:
        if not await queue.any_due(self.db, self.clock.now()):
            return []
        async with self.db.session_scope() as session:
            return await queue.claim(
                session,
                worker=self.id,
                now=self.clock.now(),
                lease_s=self.lease_s,
                limit=limit,
            )

    async def _run_jobs(self, jobs: list[Job]) -> None:
        """Runs claimed jobs; every claim's slot is handed back by the end."""
        by_kind: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            by_kind[job.kind].append(job)
        runs: list[Awaitable[None]] = []
        for kind, group in by_kind.items():
            handler = self.handlers.get(kind)
            if isinstance(handler, BatchHandler):
                runs.append(self._execute_batch(handler, group))
            else:
                runs.extend(self._execute(job, handler) for job in group)
        await asyncio.gather(*runs)

    async def _execute_batch(self, handler: BatchHandler, jobs: list[Job]) -> None:
        ctx = BatchContext(self, jobs)
        try:
            await handler.run_batch(jobs, ctx)
        finally:
            ctx.closed(len(jobs))
            self.processed += len(jobs)

    async def _execute(self, job: Job, handler: Handler | None) -> None:
        try:
            await self._execute_one(job, handler)
        finally:
            self._release(1)
            self.processed += 1

    async def _execute_one(self, job: Job, handler: Handler | None) -> None:
        now = self.clock.now
        close: Callable[[AsyncSession], Awaitable[bool]]
        try:
            if handler is None:
                raise Permanent(f"no handler for {job.kind!r}")
            context = WorkerContext(self, job)
            await handler(job.payload, context)
        except Retry as again:
            close = partial(
                queue.retry, job_id=job.id, worker=self.id, run_at=again.at, error=again.reason
            )
        except Permanent as stop:
            close = partial(queue.bury, job_id=job.id, worker=self.id, now=now(), error=str(stop))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("job %s (%s) failed: %s", job.id, job.kind, reason)
            if job.attempts >= job.max_attempts:
                close = partial(queue.bury, job_id=job.id, worker=self.id, now=now(), error=reason)
            else:
                run_at = now() + timedelta(seconds=backoff(job.attempts))
                close = partial(
                    queue.retry, job_id=job.id, worker=self.id, run_at=run_at, error=reason
                )
        else:
            if context.finished:
                return
            close = partial(queue.finish, job_id=job.id, worker=self.id, now=now())

        async def closing(_again: bool) -> None:
            # Closing an already closed claim changes nothing (it checks the holder and state).
            async with self.db.session_scope() as session:
                await close(session)

        # The job's work is done: a database that is away for a moment must not undo that.
        await patiently(closing)

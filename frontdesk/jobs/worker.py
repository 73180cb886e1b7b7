"""The job worker: claims due jobs, runs their handlers, retries with backoff, buries the dead.

Runs inside the app by default, or alone as `frontdesk worker`. Before claiming jobs it turns new
events into webhook deliveries (`webhooks.fanout`). It sleeps until the next poll or until a
commit wakes it through the broker's `jobs` channel, so work enqueued now starts now.

A handler returns None (done), or raises `Retry(at)` to run again later, or `Permanent(reason)`
to stop for good; any other exception is retried with exponential backoff and jitter until the
job's `max_attempts`, then the job is dead with the reason kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.db import Database
from frontdesk.jobs import queue
from frontdesk.jobs.clock import Clock
from frontdesk.models import Job
from frontdesk.realtime.broker import Broker

log = logging.getLogger(__name__)


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


def backoff(attempt: int, *, base_s: float = 2.0, cap_s: float = 3600.0) -> float:
    return float(min(cap_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2))  # noqa: S311


class Worker:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        handlers: dict[str, Handler],
        *,
        clock: Clock | None = None,
        before_claim: Callable[[], Awaitable[int]] | None = None,
        lease_s: float = 60.0,
        batch: int = 50,
        poll_s: float = 1.0,
        concurrency: int = 50,
    ) -> None:
        self.db = db
        self.broker = broker
        self.handlers = handlers
        self.clock = clock or Clock()
        self.before_claim = before_claim
        self.lease_s = lease_s
        self.batch = batch
        self.poll_s = poll_s
        self.id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self.processed = 0
        self.alive = False

    async def start(self) -> None:
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(ready))
        await ready.wait()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        for task in (self._task, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.alive = False

    def wake(self) -> None:
        self._wake.set()

    async def _listen(self, ready: asyncio.Event) -> None:
        async with self.broker.subscribe("jobs") as subscription:
            ready.set()
            async for _ in subscription:
                self._wake.set()

    async def _run(self) -> None:
        self.alive = True
        while True:
            try:
                worked = await self.run_once()
            except Exception:  # the database may be restarting: keep the worker alive
                log.warning("worker pass failed; retrying", exc_info=True)
                worked = 0
                await asyncio.sleep(self.poll_s)
            if worked:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def run_once(self) -> int:
        """One pass: fan out new events, then claim and run due jobs. Returns the work done."""
        fanned = await self.before_claim() if self.before_claim is not None else 0
        async with self.db.session_scope() as session:
            jobs = await queue.claim(
                session,
                worker=self.id,
                now=self.clock.now(),
                lease_s=self.lease_s,
                limit=self.batch,
            )
        if jobs:
            await asyncio.gather(*(self._execute(job) for job in jobs))
        return fanned + len(jobs)

    async def _execute(self, job: Job) -> None:
        async with self._slots:
            handler = self.handlers.get(job.kind)
            now = self.clock.now
            try:
                if handler is None:
                    raise Permanent(f"no handler for {job.kind!r}")
                context = WorkerContext(self, job)
                await handler(job.payload, context)
            except Retry as again:
                async with self.db.session_scope() as session:
                    await queue.retry(session, job.id, self.id, run_at=again.at, error=again.reason)
            except Permanent as stop:
                async with self.db.session_scope() as session:
                    await queue.bury(session, job.id, self.id, now(), str(stop))
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("job %s (%s) failed: %s", job.id, job.kind, reason)
                async with self.db.session_scope() as session:
                    if job.attempts >= job.max_attempts:
                        await queue.bury(session, job.id, self.id, now(), reason)
                    else:
                        run_at = now() + timedelta(seconds=backoff(job.attempts))
                        await queue.retry(session, job.id, self.id, run_at=run_at, error=reason)
            else:
                if not context.finished:
                    async with self.db.session_scope() as session:
                        await queue.finish(session, job.id, self.id, now())
            self.processed += 1

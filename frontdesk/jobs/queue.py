"""The job queue on the database.

`enqueue` adds a job inside the caller's unit of work, so the job exists exactly when the change
does. `claim` takes due jobs for one worker under a lease: on PostgreSQL with `FOR UPDATE SKIP
LOCKED` (workers never wait for each other), on SQLite inside the writer's `BEGIN IMMEDIATE`. A
running job whose lease expired (its worker crashed) is due again. `finish`, `retry` and `bury`
close a claim; each checks the lease holder so that a worker which lost its lease changes
nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.db import Database
from frontdesk.models import Job


def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    run_at: datetime,
    max_attempts: int = 10,
) -> Job:
    job = Job(
        kind=kind, payload=payload, status="pending", run_at=run_at, max_attempts=max_attempts
    )
    session.add(job)
    return job


def hold(job: Job, *, worker: str, now: datetime, lease_s: float) -> Job:
    """Make a job being enqueued the caller's own claim, for a process that runs the job itself
    (`frontdesk kb add`): no worker takes it while the lease lasts, any worker does if the
    caller dies."""
    job.status = "running"
    job.locked_by = worker
    job.lease_until = now + timedelta(seconds=lease_s)
    job.attempts = 1
    return job


async def extend_lease(session: AsyncSession, job_id: int, worker: str, *, until: datetime) -> bool:
    """Keep a long job's claim to `until`. False when the worker no longer holds it (its lease
    ran out and another worker took the job): it must then stop and change nothing."""
    result = await session.execute(
        update(Job).where(_held(job_id, worker)).values(lease_until=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _due(now: datetime) -> Any:
    return or_(
        and_(Job.status == "pending", Job.run_at <= now),
        and_(Job.status == "running", Job.lease_until < now),
    )


async def any_due(db: Database, now: datetime) -> bool:
    """Whether a job is due (one read, no write lock): most worker passes under chat load find
    none, and a claim would take the writer for nothing."""
    async with db.connect(db.reader) as conn:
        found = await conn.execute(select(Job.id).where(_due(now)).limit(1))
        return found.first() is not None


async def claim(
    session: AsyncSession, *, worker: str, now: datetime, lease_s: float, limit: int
) -> list[Job]:
    stmt = select(Job).where(_due(now)).order_by(Job.run_at, Job.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    jobs = list((await session.execute(stmt)).scalars())
    for job in jobs:
        job.status = "running"
        job.locked_by = worker
        job.lease_until = now + timedelta(seconds=lease_s)
        job.attempts += 1
    return jobs


def _held(job_id: int, worker: str) -> Any:
    return and_(Job.id == job_id, Job.locked_by == worker, Job.status == "running")


async def finish(session: AsyncSession, job_id: int, worker: str, now: datetime) -> bool:
    result = await session.execute(
        update(Job).where(_held(job_id, worker)).values(status="succeeded", finished_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retry(
    session: AsyncSession, job_id: int, worker: str, *, run_at: datetime, error: str
) -> bool:
    result = await session.execute(
        update(Job)
        .where(_held(job_id, worker))
        .values(
            status="pending",
            run_at=run_at,
            locked_by=None,
            lease_until=None,
            last_error=error[:2000],
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def bury(session: AsyncSession, job_id: int, worker: str, now: datetime, error: str) -> bool:
    result = await session.execute(
        update(Job)
        .where(_held(job_id, worker))
        .values(status="dead", finished_at=now, last_error=error[:2000])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def finish_many(
    session: AsyncSession, job_ids: list[int], worker: str, now: datetime
) -> set[int]:
    """Close several claims in one statement. Returns the ids this worker still held; the others
    were taken over by another worker after their lease ran out, and are its to close."""
    if not job_ids:
        return set()
    held = Job.id.in_(job_ids), Job.locked_by == worker, Job.status == "running"
    result = await session.execute(
        update(Job)
        .where(*held)
        .values(status="succeeded", finished_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars())


async def closed_by(session: AsyncSession, job_ids: list[int], worker: str) -> set[int]:
    """Which of these jobs this worker has closed already (a retried write that had committed)."""
    if not job_ids:
        return set()
    result = await session.execute(
        select(Job.id).where(Job.id.in_(job_ids), Job.locked_by == worker, Job.status != "running")
    )
    return set(result.scalars())

"""Reading the job queue's shape for monitoring: how many jobs per state and kind, and how late.

One grouped query over the `status, run_at` index, cheap enough to run on every scrape. Finished
(`succeeded`) jobs are left out: they only grow and say nothing about the queue's health.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.models import Job
from frontdesk.observability.metrics import QueuedJobs

MONITORED_STATES = ("pending", "running", "dead")


async def job_queue_summary(
    session: AsyncSession, *, now: datetime, kinds: Iterable[str] = ()
) -> list[QueuedJobs]:
    """Count and oldest due age per (state, kind); `kinds` are reported even when empty, so
    that a queue that drained reads 0 instead of disappearing."""
    due_since = func.min(case((Job.run_at <= now, Job.run_at)))
    stmt = (
        select(Job.status, Job.kind, func.count(), due_since)
        .where(Job.status.in_(MONITORED_STATES))
        .group_by(Job.status, Job.kind)
    )
    found: dict[tuple[str, str], QueuedJobs] = {
        (state, kind): QueuedJobs(state, kind, 0, 0.0)
        for state in MONITORED_STATES
        for kind in kinds
    }
    for status, kind, count, oldest in (await session.execute(stmt)).all():
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        found[(status, kind)] = QueuedJobs(status, kind, int(count), age)
    return [found[key] for key in sorted(found)]

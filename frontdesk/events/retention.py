"""Retention: activity older than `FRONTDESK_ACTIVITY_RETENTION_DAYS` is deleted.

The worker runs `ActivityRetention` between passes, at most once per `every_s` per process (two
processes pruning at once is harmless: deletes are idempotent). Deleted in small batches, oldest
first, so no transaction holds the writer long: events (never one that webhook or notification
fan-out has not handled yet), read notifications, finished jobs, and finished webhook deliveries
with their attempts. Event-derived figures of `/api/v1/metrics` (widget opens, clicks, errors) are
only available inside the retention period; conversations, messages and leads are kept.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from frontdesk.db import Database
from frontdesk.jobs.clock import Clock
from frontdesk.models import EventRecord, Job, SystemMeta, WebhookAttempt, WebhookDelivery
from frontdesk.models.notifications import Notification

log = logging.getLogger(__name__)

BATCH = 2000
MAX_BATCHES = 25  # per run; the next run continues
CURSORS = ("webhook_cursor", "notification_cursor")


class ActivityRetention:
    def __init__(self, db: Database, clock: Clock, days: int, every_s: float = 3600.0) -> None:
        self.db = db
        self.clock = clock
        self.days = days
        self.every_s = every_s
        self._last = float("-inf")

    async def __call__(self) -> int:
        """Prune if due; returns how many rows were deleted."""
        if self.days <= 0 or time.monotonic() - self._last < self.every_s:
            return 0
        self._last = time.monotonic()
        deleted = await self.prune(self.clock.now() - timedelta(days=self.days))
        if deleted:
            log.info("activity retention pruned rows", extra={"rows": deleted})
        return deleted

    async def prune(self, cutoff: datetime) -> int:
        deleted = 0
        for _ in range(MAX_BATCHES):
            removed, most = await self._batch(cutoff)
            deleted += removed
            if most < BATCH:
                break
        return deleted

    async def _batch(self, cutoff: datetime) -> tuple[int, int]:
        """One transaction: returns (rows deleted, the largest count of one kind)."""
        async with self.db.session_scope() as session:
            # Never an event that a fan-out (webhooks, notifications) has not handled yet.
            cursors = (
                await session.execute(select(SystemMeta.value).where(SystemMeta.key.in_(CURSORS)))
            ).scalars()
            limit = min((int(v) for v in cursors), default=0)
            old_events = (
                select(EventRecord.offset)
                .where(EventRecord.at < cutoff, EventRecord.offset <= limit)
                .order_by(EventRecord.offset)
                .limit(BATCH)
            )
            events = await session.execute(
                delete(EventRecord).where(EventRecord.offset.in_(old_events.scalar_subquery()))
            )
            old_notes = (
                select(Notification.id)
                .where(Notification.created_at < cutoff, Notification.read_at.is_not(None))
                .limit(BATCH)
            )
            notes = await session.execute(
                delete(Notification).where(Notification.id.in_(old_notes.scalar_subquery()))
            )
            old_jobs = (
                select(Job.id)
                .where(Job.finished_at < cutoff, Job.status.in_(("succeeded", "dead")))
                .limit(BATCH)
            )
            jobs = await session.execute(delete(Job).where(Job.id.in_(old_jobs.scalar_subquery())))
            old_deliveries = (
                select(WebhookDelivery.id)
                .where(WebhookDelivery.finished_at < cutoff)
                .limit(BATCH)
                .scalar_subquery()
            )
            await session.execute(
                delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(old_deliveries))
            )
            deliveries = await session.execute(
                delete(WebhookDelivery).where(WebhookDelivery.id.in_(old_deliveries))
            )
        counts = [int(r.rowcount or 0) for r in (events, notes, jobs, deliveries)]  # type: ignore[attr-defined]
        return sum(counts), max(counts)

"""Delivering webhooks: sign, POST, log each attempt, decide what happens next.

Only a 2xx is success, and redirects are not followed. `410 Gone` disables the endpoint. Other
failures are retried on the schedule below (with ±10 % jitter), later when a 429/502/503/504
asks for it with `Retry-After`. An endpoint that has failed for five days is disabled and
`webhook.endpoint_disabled` recorded. Each attempt is logged with its status, duration and the
first kilobyte of the response. A retry is a new job; the delivery id (`webhook-id`) stays.

The deliverer takes a whole claimed batch at once (ADR 0017): one read loads every delivery with
its endpoint, the requests go out concurrently on the shared client (at most `PER_ENDPOINT` at a
time to one endpoint), and results are written as they come back, many to a transaction (jobs
closed, attempts logged, outcome events recorded), so a slow receiver holds up only its own
deliveries. A write that meets a restarting database is retried before the batch gives up (its
jobs then run again when their leases run out).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.db import Database
from frontdesk.events.recorder import record_event
from frontdesk.jobs import queue
from frontdesk.jobs.clock import Clock
from frontdesk.jobs.queue import enqueue
from frontdesk.jobs.worker import DATABASE_PATIENCE_S, BatchContext, patiently
from frontdesk.models import Job, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from frontdesk.observability import metrics
from frontdesk.security.keys import SecretBox
from frontdesk.webhooks.signing import signature_header
from frontdesk.webhooks.ssrf import BlockedDestination, WebhookClient

log = logging.getLogger(__name__)

# Seconds to wait after attempt n (1-based) fails: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 14 h, 20 h, 24 h.
SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_ATTEMPTS = len(SCHEDULE_S) + 1
DISABLE_AFTER = timedelta(days=5)
HONOUR_RETRY_AFTER = frozenset({429, 502, 503, 504})
RESPONSE_EXCERPT = 1024
PER_ENDPOINT = 16


def next_delay(attempt: int, status: int | None, retry_after: str | None) -> float:
    delay = SCHEDULE_S[attempt - 1] * random.uniform(0.9, 1.1)  # noqa: S311 - jitter
    if status in HONOUR_RETRY_AFTER and retry_after and retry_after.isdigit():
        delay = max(delay, float(retry_after))
    return delay


class Outcome:
    def __init__(self) -> None:
        self.status: int | None = None
        self.retry_after: str | None = None
        self.response: str | None = None
        self.error: str | None = None
        self.duration_ms = 0


@dataclass
class Result:
    """What became of one claimed job. `outcome` is None when nothing was sent: the delivery is
    gone or settled (`settled`), or its endpoint is no longer active."""

    job: Job
    delivery_id: str
    at: datetime
    outcome: Outcome | None = None
    settled: bool = False


class EndpointSlots:
    """At most `limit` requests in flight to one endpoint, across every batch of this worker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, endpoint_id: str) -> AsyncIterator[None]:
        slot = self._slots.get(endpoint_id)
        if slot is None:
            slot = self._slots[endpoint_id] = (asyncio.Semaphore(self.limit), [0])
        semaphore, users = slot
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._slots[endpoint_id]


class Deliverer:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        client: WebhookClient,
        clock: Clock,
        *,
        per_endpoint: int = PER_ENDPOINT,
        database_patience_s: float = DATABASE_PATIENCE_S,
    ) -> None:
        self.db = db
        self.box = box
        self.client = client
        self.clock = clock
        self.slots = EndpointSlots(per_endpoint)
        self.database_patience_s = database_patience_s

    def _secrets(self, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
        found = [self.box.open(endpoint.secret_sealed)]
        expires = endpoint.previous_secret_expires_at
        if endpoint.previous_secret_sealed and expires is not None and expires > now:
            found.append(self.box.open(endpoint.previous_secret_sealed))
        return found

    async def _send(
        self, endpoint: WebhookEndpoint, delivery: WebhookDelivery, now: datetime, keys: list[str]
    ) -> Outcome:
        outcome = Outcome()
        body = delivery.payload.encode()
        timestamp = int(now.timestamp())
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(keys, delivery.id, timestamp, body),
        }
        started = time.perf_counter()
        try:
            async with self.client.post(endpoint.url, content=body, headers=headers) as response:
                outcome.status = response.status
                outcome.retry_after = response.headers.get("retry-after")
                excerpt = b""
                while len(excerpt) < RESPONSE_EXCERPT:
                    chunk = await response.content.read(RESPONSE_EXCERPT - len(excerpt))
                    if not chunk:
                        break
                    excerpt += chunk
                outcome.response = excerpt.decode("utf-8", errors="replace")
        except BlockedDestination as exc:
            outcome.error = f"blocked: {exc}"
        except TimeoutError:
            outcome.error = "timeout"
        except aiohttp.ClientError as exc:
            outcome.error = f"{type(exc).__name__}"
        except Exception as exc:  # logged as a failed attempt and retried, like any failure
            log.warning("webhook request failed unexpectedly", exc_info=True)
            outcome.error = f"{type(exc).__name__}"
        outcome.duration_ms = round((time.perf_counter() - started) * 1000)
        metrics.webhook_attempt(outcome.status, outcome.error, time.perf_counter() - started)
        return outcome

    async def run_batch(self, jobs: list[Job], ctx: BatchContext) -> None:
        ids = [str(job.payload.get("delivery_id", "")) for job in jobs]
        found = await patiently(partial(self._load, ids), patience_s=self.database_patience_s)
        keys: dict[str, list[str]] = {}
        results: list[Result] = []
        ready = asyncio.Event()
        left = len(jobs)

        async def deliver(job: Job, delivery_id: str) -> None:
            nonlocal left
            now = self.clock.now()
            result = Result(job, delivery_id, now)
            row = found.get(delivery_id)
            if row is None or row[0].status != "pending":
                result.settled = True  # deleted, or settled by another attempt
            elif row[1].status == "active":
                delivery, endpoint = row
                try:
                    if endpoint.id not in keys:
                        keys[endpoint.id] = self._secrets(endpoint, now)
                except Exception as exc:  # a secret that cannot be opened: a failed attempt
                    log.warning("webhook secret of %s unusable", endpoint.id, exc_info=True)
                    result.outcome = Outcome()
                    result.outcome.error = type(exc).__name__
                else:
                    async with self.slots.hold(endpoint.id):
                        result.outcome = await self._send(
                            endpoint, delivery, now, keys[endpoint.id]
                        )
            results.append(result)
            left -= 1
            ready.set()

        async def record() -> None:
            # Group commit: whatever came back while the previous write ran goes in the next.
            while True:
                await ready.wait()
                ready.clear()
                taken = results[:]
                del results[:]
                if taken:
                    await patiently(
                        partial(self._record, taken, ctx), patience_s=self.database_patience_s
                    )
                    ctx.closed(len(taken))
                if not left and not results:
                    return

        async with asyncio.TaskGroup() as group:
            group.create_task(record())
            for job, delivery_id in zip(jobs, ids, strict=True):
                group.create_task(deliver(job, delivery_id))

    async def _load(
        self, ids: list[str], _again: bool
    ) -> dict[str, tuple[WebhookDelivery, WebhookEndpoint]]:
        async with self.db.read_scope() as session:
            rows = await session.execute(
                select(WebhookDelivery, WebhookEndpoint)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id.in_(set(ids)))
            )
            return {delivery.id: (delivery, endpoint) for delivery, endpoint in rows}

    async def _record(self, results: list[Result], ctx: BatchContext, again: bool) -> None:
        worker = ctx.worker.id
        async with self.db.session_scope() as session:
            if again:
                # The connection was lost, perhaps after the commit: jobs this worker closed
                # already have their attempts logged, and must not be logged twice.
                done = await queue.closed_by(session, [r.job.id for r in results], worker)
                results = [r for r in results if r.job.id not in done]
            job_ids = [r.job.id for r in results]
            held = await queue.finish_many(session, job_ids, worker, ctx.clock.now())
            wanted = [r for r in results if not r.settled]
            if not wanted:
                return
            stmt = (
                select(WebhookDelivery)
                .where(WebhookDelivery.id.in_({r.delivery_id for r in wanted}))
                .order_by(WebhookDelivery.id)  # rows locked in one order: no deadlocks
            )
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            deliveries = {d.id: d for d in (await session.execute(stmt)).scalars()}
            endpoint_ids = {d.endpoint_id for d in deliveries.values()}
            endpoints = {
                e.id: e
                for e in (
                    await session.execute(
                        select(WebhookEndpoint).where(WebhookEndpoint.id.in_(endpoint_ids))
                    )
                ).scalars()
            }
            for result in wanted:
                delivery = deliveries.get(result.delivery_id)
                if delivery is None:
                    continue
                endpoint = endpoints[delivery.endpoint_id]
                self._settle(session, result, delivery, endpoint, result.job.id in held)

    def _settle(
        self,
        session: AsyncSession,
        result: Result,
        delivery: WebhookDelivery,
        endpoint: WebhookEndpoint,
        held: bool,
    ) -> None:
        """One attempt's consequences. `held`: this worker still held the job, so it decides
        what comes next; otherwise the job's new holder does (the attempt is logged all the
        same, and a success still settles the delivery: the receiver has it)."""
        now, outcome = result.at, result.outcome
        if outcome is None:
            if delivery.status == "pending":  # the endpoint was disabled or removed meanwhile
                delivery.status, delivery.finished_at = "dead", now
                metrics.webhook_settled("dead")
            return
        delivery.attempts += 1
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                number=delivery.attempts,
                at=now,
                status_code=outcome.status,
                duration_ms=outcome.duration_ms,
                response=outcome.response,
                error=outcome.error,
            )
        )
        if delivery.status != "pending":
            return  # settled by another attempt meanwhile (a duplicate send): logged only
        delivery.last_status_code = outcome.status
        data = {
            "endpoint_id": endpoint.id,
            "delivery_id": delivery.id,
            "event_type": delivery.event_type,
            "attempts": delivery.attempts,
            "status_code": outcome.status,
        }
        if outcome.status is not None and 200 <= outcome.status < 300:
            delivery.status, delivery.finished_at = "succeeded", now
            metrics.webhook_settled("succeeded")
            endpoint.failing_since = None
            record_event(session, "webhook.delivery_succeeded", site_id=endpoint.site_id, data=data)
            return
        if not held:
            return
        endpoint.failing_since = endpoint.failing_since or now
        gone = outcome.status == 410
        too_long = now - endpoint.failing_since >= DISABLE_AFTER
        blocked = bool(outcome.error and outcome.error.startswith("blocked"))
        if (gone or too_long) and endpoint.status == "active":
            endpoint.status = "disabled"
            endpoint.disabled_reason = "410 Gone" if gone else "failing for 5 days"
            record_event(
                session,
                "webhook.endpoint_disabled",
                site_id=endpoint.site_id,
                data={"endpoint_id": endpoint.id, "reason": endpoint.disabled_reason},
            )
        if gone or too_long or blocked or delivery.attempts >= MAX_ATTEMPTS:
            delivery.status, delivery.finished_at = "dead", now
            metrics.webhook_settled("dead")
            record_event(
                session,
                "webhook.delivery_failed",
                site_id=endpoint.site_id,
                data={**data, "error": outcome.error},
            )
            return
        delay = next_delay(delivery.attempts, outcome.status, outcome.retry_after)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        enqueue(
            session,
            "webhook.deliver",
            {"delivery_id": delivery.id},
            run_at=delivery.next_attempt_at,
        )

"""Delivering one webhook: sign, POST, log the attempt, decide what happens next.

Only a 2xx is success, and redirects are not followed. `410 Gone` disables the endpoint. Other
failures are retried on the schedule below (with ±10 % jitter), later when a 429/502/503/504
asks for it with `Retry-After`. An endpoint that has failed for five days is disabled and
`webhook.endpoint_disabled` recorded. Each attempt is logged with its status, duration and the
first kilobyte of the response. A retry is a new job; the delivery id (`webhook-id`) stays.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from frontdesk.db import Database
from frontdesk.events.recorder import record_event
from frontdesk.jobs.clock import Clock
from frontdesk.jobs.queue import enqueue
from frontdesk.jobs.worker import WorkerContext
from frontdesk.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from frontdesk.security.keys import SecretBox
from frontdesk.webhooks.signing import signature_header
from frontdesk.webhooks.ssrf import BlockedDestination

# Seconds to wait after attempt n (1-based) fails: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 14 h, 20 h, 24 h.
SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_ATTEMPTS = len(SCHEDULE_S) + 1
DISABLE_AFTER = timedelta(days=5)
HONOUR_RETRY_AFTER = frozenset({429, 502, 503, 504})
RESPONSE_EXCERPT = 1024


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


class Deliverer:
    def __init__(
        self, db: Database, box: SecretBox, client: httpx.AsyncClient, clock: Clock
    ) -> None:
        self.db = db
        self.box = box
        self.client = client
        self.clock = clock

    def _secrets(self, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
        found = [self.box.open(endpoint.secret_sealed)]
        expires = endpoint.previous_secret_expires_at
        if endpoint.previous_secret_sealed and expires is not None and expires > now:
            found.append(self.box.open(endpoint.previous_secret_sealed))
        return found

    async def _send(
        self, endpoint: WebhookEndpoint, delivery: WebhookDelivery, now: datetime
    ) -> Outcome:
        outcome = Outcome()
        body = delivery.payload.encode()
        timestamp = int(now.timestamp())
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                self._secrets(endpoint, now), delivery.id, timestamp, body
            ),
        }
        started = time.perf_counter()
        try:
            async with self.client.stream(
                "POST", endpoint.url, content=body, headers=headers
            ) as response:
                outcome.status = response.status_code
                outcome.retry_after = response.headers.get("retry-after")
                excerpt = b""
                async for chunk in response.aiter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= RESPONSE_EXCERPT:
                        break
                outcome.response = excerpt[:RESPONSE_EXCERPT].decode("utf-8", errors="replace")
        except BlockedDestination as exc:
            outcome.error = f"blocked: {exc}"
        except httpx.TimeoutException:
            outcome.error = "timeout"
        except httpx.HTTPError as exc:
            outcome.error = f"{type(exc).__name__}"
        outcome.duration_ms = round((time.perf_counter() - started) * 1000)
        return outcome

    async def __call__(self, payload: dict[str, Any], ctx: WorkerContext) -> None:
        delivery_id = str(payload["delivery_id"])
        async with self.db.read_scope() as session:
            found = (
                await session.execute(
                    select(WebhookDelivery, WebhookEndpoint)
                    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                    .where(WebhookDelivery.id == delivery_id)
                )
            ).first()
        if found is None or found[0].status != "pending":
            return  # deleted, or already settled by another attempt
        delivery, endpoint = found
        now = self.clock.now()
        outcome = None if endpoint.status != "active" else await self._send(endpoint, delivery, now)
        await self._record(delivery_id, outcome, now, ctx)

    async def _record(
        self, delivery_id: str, outcome: Outcome | None, now: datetime, ctx: WorkerContext
    ) -> None:
        async with self.db.session_scope() as session:
            await ctx.finish_in(session)
            stmt = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            delivery = (await session.execute(stmt)).scalar_one_or_none()
            if delivery is None or delivery.status != "pending":
                return
            endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
            assert endpoint is not None
            if outcome is None:
                delivery.status, delivery.finished_at = "dead", now
                return
            delivery.attempts += 1
            delivery.last_status_code = outcome.status
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
            data = {
                "endpoint_id": endpoint.id,
                "delivery_id": delivery.id,
                "event_type": delivery.event_type,
                "attempts": delivery.attempts,
                "status_code": outcome.status,
            }
            if outcome.status is not None and 200 <= outcome.status < 300:
                delivery.status, delivery.finished_at = "succeeded", now
                endpoint.failing_since = None
                record_event(
                    session, "webhook.delivery_succeeded", site_id=endpoint.site_id, data=data
                )
                return
            endpoint.failing_since = endpoint.failing_since or now
            gone = outcome.status == 410
            too_long = now - endpoint.failing_since >= DISABLE_AFTER
            blocked = bool(outcome.error and outcome.error.startswith("blocked"))
            if gone or too_long:
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

"""Webhook endpoints: create (the secret is shown once), change, rotate the secret, delete;
and redelivery of past deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.audit import record_audit
from frontdesk.errors import invalid_request
from frontdesk.events.types import EVENT_TYPES
from frontdesk.ids import new_id
from frontdesk.jobs.queue import enqueue
from frontdesk.models import EventRecord, WebhookDelivery, WebhookEndpoint, utcnow
from frontdesk.security.keys import SecretBox
from frontdesk.security.principals import Principal
from frontdesk.webhooks.signing import new_secret

ROTATION_OVERLAP = timedelta(hours=24)


def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise invalid_request("url must be an absolute http(s) URL.")
    if parts.username or parts.password:
        raise invalid_request("url must not carry credentials.")
    return url.strip()


def check_event_filter(events: list[str]) -> list[str]:
    if not events:
        raise invalid_request("events must list at least one event type, or '*'.")
    for pattern in events:
        known = pattern == "*" or pattern in EVENT_TYPES
        prefix = pattern.endswith(".*") and any(t.startswith(pattern[:-1]) for t in EVENT_TYPES)
        if not (known or prefix):
            raise invalid_request(f"unknown event type {pattern!r}.")
    return sorted(set(events))


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str


async def do_create_endpoint(
    session: AsyncSession,
    box: SecretBox,
    *,
    url: str,
    events: list[str],
    site_id: str | None,
    description: str = "",
    actor: Principal | None,
) -> CreatedEndpoint:
    head = (await session.execute(select(func.max(EventRecord.offset)))).scalar()
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=new_id("ep"),
        site_id=site_id,
        url=check_url(url),
        events=check_event_filter(events),
        description=description[:300],
        secret_sealed=box.seal(secret),
        status="active",
        from_offset=int(head or 0),
        created_at=utcnow(),
    )
    session.add(endpoint)
    record_audit(session, actor, "webhook.created", target=endpoint.id, site_id=site_id)
    return CreatedEndpoint(endpoint, secret)


async def do_rotate_endpoint_secret(
    session: AsyncSession, box: SecretBox, endpoint: WebhookEndpoint, *, actor: Principal | None
) -> str:
    """A new secret; the old one keeps signing beside it for the overlap period."""
    secret = new_secret()
    endpoint.previous_secret_sealed = endpoint.secret_sealed
    endpoint.previous_secret_expires_at = utcnow() + ROTATION_OVERLAP
    endpoint.secret_sealed = box.seal(secret)
    record_audit(
        session, actor, "webhook.secret_rotated", target=endpoint.id, site_id=endpoint.site_id
    )
    return secret


def do_update_endpoint(
    endpoint: WebhookEndpoint,
    *,
    url: str | None,
    events: list[str] | None,
    enabled: bool | None,
) -> None:
    if url is not None:
        endpoint.url = check_url(url)
    if events is not None:
        endpoint.events = check_event_filter(events)
    if enabled is True:
        endpoint.status, endpoint.disabled_reason, endpoint.failing_since = "active", None, None
    elif enabled is False:
        endpoint.status, endpoint.disabled_reason = "disabled", "disabled by an operator"


def do_redeliver(session: AsyncSession, delivery: WebhookDelivery, *, now: datetime) -> None:
    """Send a delivery again (same webhook-id, so receivers can deduplicate)."""
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.finished_at = None
    enqueue(session, "webhook.deliver", {"delivery_id": delivery.id}, run_at=now)

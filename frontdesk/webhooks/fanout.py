"""Fan-out: the event log becomes webhook deliveries.

The events table is the outbox. A cursor (`system_meta.webhook_cursor`) marks the last offset
handled; each pass reads the next events, creates one delivery (and its job) per matching active
endpoint, and moves the cursor, all in one transaction, so an event is fanned out exactly once.
Offsets follow commit order, so no event can appear behind the cursor later. Delivery outcome
events (`webhook.delivery_*`) are never sent as webhooks themselves.
"""

from __future__ import annotations

import fnmatch

import orjson
from sqlalchemy import insert, select

from frontdesk.db import Database
from frontdesk.events.cursors import load_events, next_event_heads, take_cursor
from frontdesk.ids import new_id
from frontdesk.jobs.clock import Clock
from frontdesk.models import EventRecord, Job, WebhookDelivery, WebhookEndpoint

NOT_SENT = ("webhook.delivery_succeeded", "webhook.delivery_failed", "webhook.test")
MAX_INLINE_BYTES = 20 * 1024
BATCH = 500
CURSOR = "webhook_cursor"
# Who fan-out hands events to: with none, the cursor moves to the head (`skip_unwatched`).
ACTIVE = WebhookEndpoint.status == "active"
WATCHERS = select(WebhookEndpoint.id).where(ACTIVE)


def event_fields(event: EventRecord) -> dict[str, object]:
    """The public `Event` shape. Not `to_event(...).public()`: a test send builds its payload
    before the commit, when the event has no offset yet."""
    return {
        "id": event.id,
        "type": event.type,
        "at": event.at.isoformat(),
        "site_id": event.site_id,
        "data": event.data,
    }


def matches(endpoint: WebhookEndpoint, event: EventRecord) -> bool:
    if endpoint.site_id is not None and endpoint.site_id != event.site_id:
        return False
    if endpoint.channel_id is not None:
        # A channel's endpoint carries only the replies in that channel's conversations.
        message = event.data.get("message") or {}
        return (
            event.type == "message.created"
            and event.data.get("channel") == endpoint.channel_id
            and message.get("role") in ("assistant", "operator")
        )
    return any(fnmatch.fnmatchcase(event.type, pattern) for pattern in endpoint.events)


def payload_for(event: EventRecord, public_url: str) -> bytes:
    """The body sent: the event, or a reference to fetch it when it is over 20 KB."""
    body = {**event_fields(event), "timestamp": event.at.isoformat()}
    raw = orjson.dumps(body)
    if len(raw) <= MAX_INLINE_BYTES:
        return raw
    reference = {
        "id": event.id,
        "type": event.type,
        "at": event.at.isoformat(),
        "timestamp": event.at.isoformat(),
        "site_id": event.site_id,
        "data": None,
        "data_url": f"{public_url}/api/v1/events/{event.id}",
    }
    return orjson.dumps(reference)


async def fan_out(db: Database, clock: Clock, public_url: str) -> int:
    """One pass; returns how many events were handled. The worker calls it only when the log
    has moved past the cursor (`events.cursors.cursors_behind`)."""
    async with db.session_scope() as session:
        taken = await take_cursor(session, CURSOR)
        if taken is None:
            return 0
        endpoints = list((await session.execute(select(WebhookEndpoint).where(ACTIVE))).scalars())
        if not endpoints:
            # Nobody to deliver to: an endpoint created later starts at the head it saw.
            return taken.skip_to_head()
        heads = await next_event_heads(session, taken, BATCH)
        loaded = await load_events(session, [h.offset for h in heads if h.type not in NOT_SENT])
        events = [loaded[h.offset] for h in heads if h.offset in loaded]
        now = clock.now()
        deliveries: list[dict[str, object]] = []
        for event in events:
            for endpoint in endpoints:
                if event.offset <= endpoint.from_offset or not matches(endpoint, event):
                    continue
                deliveries.append(
                    {
                        "id": new_id("msg"),
                        "endpoint_id": endpoint.id,
                        "event_id": event.id,
                        "event_offset": event.offset,
                        "event_type": event.type,
                        "payload": payload_for(event, public_url).decode(),
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
        if deliveries:
            # Bulk inserts without ORM objects: fan-out writes two rows per delivery, and building
            # objects for them was most of its cost.
            await session.execute(insert(WebhookDelivery), deliveries)
            await session.execute(
                insert(Job),
                [
                    {
                        "kind": "webhook.deliver",
                        "payload": {"delivery_id": delivery["id"]},
                        "status": "pending",
                        "attempts": 0,
                        "max_attempts": 10,
                        "run_at": now,
                        "created_at": now,
                    }
                    for delivery in deliveries
                ],
            )
        taken.cursor.value = str(heads[-1].offset)
        return len(heads)

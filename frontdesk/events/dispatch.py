"""Post-commit dispatch: committed events go to the broker's channels.

Channels: `events` (every event, for the dashboard), `site:{site_id}`, and
`conversation:{conversation_id}` for events about one conversation (what a chat connection
follows). The broker may drop a publication; consumers repair from the database by offset/seq.
"""

from __future__ import annotations

import logging

import orjson

from frontdesk.events.types import Event
from frontdesk.models import EventRecord
from frontdesk.realtime.broker import Broker

log = logging.getLogger(__name__)

# Events no job worker acts on (the cursors pass over them at the next wake-up or poll).
NOTHING_TO_DO = frozenset({"webhook.delivery_succeeded"})


def to_event(record: EventRecord) -> Event:
    return Event(
        id=record.id,
        offset=record.offset,
        type=record.type,
        at=record.at,
        site_id=record.site_id,
        data=record.data,
    )


def channels_for(event: Event) -> list[str]:
    channels = ["events"]
    if event.site_id:
        channels.append(f"site:{event.site_id}")
    if event.type.startswith("site.") or event.type.startswith("knowledge."):
        channels.append("config")  # every process drops its cached copy
    conversation_id = event.data.get("conversation_id")
    if isinstance(conversation_id, str):
        channels.append(f"conversation:{conversation_id}")
    return channels


class EventDispatcher:
    """The `EventPublisher` the database hands committed events to."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish_events(self, events: list[EventRecord]) -> None:
        # New events may need webhook deliveries: wake the job workers (any process). Successful
        # deliveries need nothing from them, and waking for each batch of them cost a worker pass.
        if any(record.type not in NOTHING_TO_DO for record in events):
            try:
                await self.broker.publish("jobs", b"events")
            except Exception:
                log.warning("job wake-up publication failed")
        for record in events:
            event = to_event(record)
            payload = orjson.dumps(
                {"kind": "event", "offset": event.offset, "event": event.public()}
            )
            for channel in channels_for(event):
                try:
                    await self.broker.publish(channel, payload)
                except Exception:  # the change is committed; the stream repairs from the DB
                    log.warning("event publication failed", extra={"channel": channel})

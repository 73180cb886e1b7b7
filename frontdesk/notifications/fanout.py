"""Events become notifications: one pass of the worker follows the event log by a cursor
(`system_meta.notification_cursor`), like webhook fan-out, and in the same transaction creates
each operator's notifications, queues their emails, and moves the cursor, so every event is
considered exactly once. After the commit, in-app notifications go live to the operator's own
broker channel `operator:{id}`, which their `/ws/events` connections follow.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select

from frontdesk.db import Database
from frontdesk.events.cursors import load_events, next_event_heads, take_cursor
from frontdesk.ids import new_id
from frontdesk.jobs.clock import Clock
from frontdesk.jobs.queue import enqueue
from frontdesk.models import EventRecord, Operator
from frontdesk.models.notifications import Notification, NotificationPreference
from frontdesk.notifications.mailer import Mailer
from frontdesk.notifications.preferences import Preferences
from frontdesk.notifications.render import describe
from frontdesk.realtime.broker import Broker

log = logging.getLogger(__name__)

CURSOR = "notification_cursor"
# Who fan-out hands events to: with none, the cursor moves to the head (`skip_unwatched`).
ENABLED = Operator.disabled.is_(False)
WATCHERS = select(Operator.id).where(ENABLED)
BATCH = 500
EMAIL_JOB = "notification.email"
DIGEST_JOB = "notification.digest"
EMAIL_ATTEMPTS = 8


def notification_public(note: Notification) -> dict[str, Any]:
    """A notification as the API and the live stream show it."""
    return {
        "id": note.id,
        "kind": note.event_type,
        "event_id": note.event_id,
        "site_id": note.site_id,
        "title": note.title,
        "body": note.body,
        "link": note.link,
        "at": note.created_at.isoformat(),
        "read": note.read_at is not None,
        "email": note.email_state,
    }


def operator_channel(operator_id: str) -> str:
    return f"operator:{operator_id}"


def schedule_digest(
    session: Any, row: NotificationPreference, prefs: Preferences, now: datetime
) -> None:
    """Queue the operator's next digest unless one is already due (one pending digest job per
    operator: `digest_due_at` is set exactly while that job exists)."""
    if row.digest_due_at is not None:
        return
    due = prefs.email_at(now + timedelta(minutes=prefs.digest_interval_min))
    row.digest_due_at = due
    enqueue(
        session,
        DIGEST_JOB,
        {"operator_id": row.operator_id},
        run_at=due,
        max_attempts=EMAIL_ATTEMPTS,
    )


class NotificationFanout:
    def __init__(self, db: Database, broker: Broker, mailer: Mailer, clock: Clock, public_url: str):
        self.db = db
        self.broker = broker
        self.mailer = mailer
        self.clock = clock
        self.public_url = public_url

    async def __call__(self) -> int:
        """One pass; returns how many events were considered. The worker calls it only when the
        log has moved past the cursor (`events.cursors.cursors_behind`)."""
        live: dict[str, list[Notification]] = defaultdict(list)
        async with self.db.session_scope() as session:
            taken = await take_cursor(session, CURSOR)
            if taken is None:
                return 0
            postgres = session.get_bind().dialect.name == "postgresql"
            operators = list(
                (await session.execute(select(Operator).where(ENABLED))).scalars().all()
            )
            if not operators:
                return taken.skip_to_head()
            heads = await next_event_heads(session, taken, BATCH)
            rows_stmt = select(NotificationPreference)
            if postgres:  # the digest job updates the same rows
                rows_stmt = rows_stmt.with_for_update()
            rows = {r.operator_id: r for r in (await session.execute(rows_stmt)).scalars()}
            prefs = {op.id: Preferences.of(rows.get(op.id)) for op in operators}
            # Who wants what is decided on the events' heads; only those events are read whole.
            wanted_by = [
                (
                    head,
                    [
                        op
                        for op in operators
                        if head.actor != op.id and prefs[op.id].wants(head.type, head.site_id)
                    ],
                )
                for head in heads
            ]
            events = await load_events(session, [head.offset for head, ops in wanted_by if ops])
            now = self.clock.now()
            for head, wanting in wanted_by:
                for operator in wanting:
                    wanted = prefs[operator.id]
                    note = self._notification(
                        session, operator, wanted, rows, events[head.offset], now
                    )
                    if wanted.in_app:
                        live[operator.id].append(note)
            taken.cursor.value = str(heads[-1].offset)
        if live:
            await self._publish(live)
        return len(heads)

    def _notification(
        self,
        session: Any,
        operator: Operator,
        prefs: Preferences,
        rows: dict[str, NotificationPreference],
        event: EventRecord,
        now: datetime,
    ) -> Notification:
        text = describe(event, self.public_url)
        note = Notification(
            id=new_id("ntf"),
            operator_id=operator.id,
            event_id=event.id,
            event_type=event.type,
            site_id=event.site_id,
            title=text.title,
            body=text.body,
            link=text.link,
            created_at=event.at,  # when it happened: the list reads in event order
            # Email-only: kept in the list as read, so the unread count never moves for it.
            read_at=None if prefs.in_app else now,
            email_state="none",
        )
        session.add(note)
        if prefs.email:
            row = rows.get(operator.id)
            if not self.mailer.configured:
                note.email_state = "skipped"
            elif prefs.email_mode == "digest" and row is not None:
                note.email_state = "digest"
                schedule_digest(session, row, prefs, now)
            else:
                note.email_state = "pending"
                enqueue(
                    session,
                    EMAIL_JOB,
                    {"notification_id": note.id},
                    run_at=prefs.email_at(now),
                    max_attempts=EMAIL_ATTEMPTS,
                )
        return note

    async def _publish(self, live: dict[str, list[Notification]]) -> None:
        async with self.db.read_scope() as session:
            unread = dict(
                (
                    await session.execute(
                        select(Notification.operator_id, func.count())
                        .where(
                            Notification.operator_id.in_(list(live)),
                            Notification.read_at.is_(None),
                        )
                        .group_by(Notification.operator_id)
                    )
                ).all()
            )
        for operator_id, notes in live.items():
            for note in notes:
                frame = {
                    "type": "notification",
                    "notification": notification_public(note),
                    "unread": int(unread.get(operator_id, 0)),
                }
                try:
                    await self.broker.publish(operator_channel(operator_id), orjson.dumps(frame))
                except Exception:  # stored; the dashboard lists it on its next fetch
                    log.warning("notification publication failed")

"""The email jobs: one notification now (`notification.email`), or an operator's digest
(`notification.digest`). Both re-check quiet hours when they run (preferences may have changed
since they were queued) and mark what they sent in the job's own transaction. A failed send
raises: the worker retries with backoff, then buries the job with the reason.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from frontdesk.db import Database
from frontdesk.jobs.worker import Retry, WorkerContext
from frontdesk.models import Operator
from frontdesk.models.notifications import Notification, NotificationPreference
from frontdesk.notifications.fanout import schedule_digest
from frontdesk.notifications.mailer import Mailer
from frontdesk.notifications.preferences import Preferences
from frontdesk.notifications.render import digest_email, immediate_email

DIGEST_MAX = 200  # notifications per digest email; the rest go in the next one


class EmailNotification:
    def __init__(self, db: Database, mailer: Mailer) -> None:
        self.db = db
        self.mailer = mailer

    async def __call__(self, payload: dict[str, Any], ctx: WorkerContext) -> None:
        note_id = str(payload.get("notification_id", ""))
        async with self.db.read_scope() as session:
            note = await session.get(Notification, note_id)
            if note is None or note.email_state != "pending":
                return  # already sent (a redelivered job) or gone
            operator = await session.get(Operator, note.operator_id)
            row = await session.get(NotificationPreference, note.operator_id)
        prefs = Preferences.of(row)
        if operator is None or operator.disabled or not prefs.email:
            await self._mark(ctx, note_id, "skipped")
            return
        now = ctx.clock.now()
        at = prefs.email_at(now)
        if at > now:
            raise Retry(at, "quiet hours")
        await self.mailer.send(immediate_email(note, sender=self.mailer.sender, to=operator.email))
        await self._mark(ctx, note_id, "sent")

    async def _mark(self, ctx: WorkerContext, note_id: str, state: str) -> None:
        async with self.db.session_scope() as session:
            await session.execute(
                update(Notification)
                .where(Notification.id == note_id)
                .values(email_state=state, emailed_at=ctx.clock.now() if state == "sent" else None)
            )
            await ctx.finish_in(session)


class DigestEmail:
    def __init__(self, db: Database, mailer: Mailer) -> None:
        self.db = db
        self.mailer = mailer

    async def __call__(self, payload: dict[str, Any], ctx: WorkerContext) -> None:
        operator_id = str(payload.get("operator_id", ""))
        async with self.db.read_scope() as session:
            operator = await session.get(Operator, operator_id)
            row = await session.get(NotificationPreference, operator_id)
            notes = list(
                (
                    await session.execute(
                        select(Notification)
                        .where(
                            Notification.operator_id == operator_id,
                            Notification.email_state == "digest",
                        )
                        .order_by(Notification.created_at, Notification.id)
                        .limit(DIGEST_MAX)
                    )
                ).scalars()
            )
        prefs = Preferences.of(row)
        now = ctx.clock.now()
        wanted = operator is not None and not operator.disabled and prefs.email
        if wanted and notes:
            at = prefs.email_at(now)
            if at > now:
                raise Retry(at, "quiet hours")
            assert operator is not None
            await self.mailer.send(
                digest_email(notes, sender=self.mailer.sender, to=operator.email)
            )
        async with self.db.session_scope() as session:
            ids = [n.id for n in notes]
            if ids:
                await session.execute(
                    update(Notification)
                    .where(Notification.id.in_(ids))
                    .values(
                        email_state="sent" if wanted else "skipped",
                        emailed_at=now if wanted else None,
                    )
                )
            stmt = select(NotificationPreference).where(
                NotificationPreference.operator_id == operator_id
            )
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update()  # fan-out sets digest_due_at under the same lock
            locked = (await session.execute(stmt)).scalar_one_or_none()
            if locked is not None:
                waiting = await session.scalar(
                    select(func.count())
                    .select_from(Notification)
                    .where(
                        Notification.operator_id == operator_id,
                        Notification.email_state == "digest",  # the sent ones are marked
                    )
                )
                locked.digest_due_at = None
                if waiting:  # more arrived while this one was being sent: the next digest
                    schedule_digest(session, locked, prefs, now)
            await ctx.finish_in(session)

"""`/ws/events`: the live event stream for the dashboard and integrations, with recovery.

Authenticated by the dashboard's session cookie (then the `Origin` must be FrontDesk's own,
against cross-site WebSocket hijacking) or by a first frame `{"type": "auth", "api_key"}`; the
`events` permission is needed. `subscribe` may carry `since: {epoch, offset}`: if every event after
that offset is still inside the recovery window (size and age), all of them are replayed in order;
otherwise `recovered: false` and none, never a partial replay. Live events follow in offset order;
an offset jump is filled from the database first. A signed-in operator also gets their own
notifications (`notification` and `notifications_read` frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from datetime import timedelta
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from frontdesk.api.v1.deps import principal_from_api_key, principal_from_session, same_origin
from frontdesk.errors import AppError
from frontdesk.events.dispatch import to_event
from frontdesk.models import EventRecord, utcnow
from frontdesk.notifications.fanout import operator_channel
from frontdesk.queries.events import event_epoch, events_between, offset_bounds
from frontdesk.realtime.broker import RESYNC
from frontdesk.realtime.frames import (
    CLOSE_AUTH_TIMEOUT,
    CLOSE_ORIGIN,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
    Auth,
    Ping,
    Subscribe,
    error_frame,
    events_frames,
)
from frontdesk.realtime.sockets import Close, close_quietly, connection_outbox
from frontdesk.security.operator_sessions import SESSION_COOKIE
from frontdesk.security.principals import Principal
from frontdesk.services import Services

PAGE = 500


class EventSocket:
    def __init__(self, ws: WebSocket, services: Services, ip: str | None) -> None:
        self.ws = ws
        self.services = services
        self.settings = services.settings
        self.ip = ip
        self.principal: Principal | None = None
        self.patterns: list[str] = ["*"]
        self.site_filter: str | None = None
        self.last_offset = 0
        self.outbox = connection_outbox(ws, services)
        self._live: asyncio.Task[None] | None = None
        self._notifications: asyncio.Task[None] | None = None
        self._ready_for_live = asyncio.Event()

    async def run(self) -> None:
        await self.ws.accept()
        limits = self.services.connection_limits
        acquired = False
        try:
            await self._authenticate()
            assert self.principal is not None
            acquired = limits.acquire(self.ip, self.principal.site_id)
            if not acquired:
                raise Close(CLOSE_RATE_LIMITED, "too many connections")
            if self.principal.kind == "operator":
                notified = asyncio.Event()
                self._notifications = asyncio.create_task(self._notify(notified))
                await notified.wait()
            self.outbox.send({"type": "ready", "heartbeat_s": self.settings.ws_heartbeat_s})
            await self._loop()
        except Close as close:
            await self.outbox.drain(0.5)
            await close_quietly(self.ws, close.code, close.reason)
        except WebSocketDisconnect:
            pass
        finally:
            if acquired:
                limits.release(self.ip, self.principal.site_id if self.principal else None)
            for task in (self._live, self._notifications):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self.outbox.stop()

    async def _authenticate(self) -> None:
        origin = self.ws.headers.get("origin")
        cookie = self.ws.cookies.get(SESSION_COOKIE)
        try:
            if cookie:
                if origin is None or not same_origin(self.services, origin):
                    raise Close(CLOSE_ORIGIN, "origin not allowed")
                self.principal, _ = await principal_from_session(self.services, cookie, self.ip)
            else:
                if origin is not None and not same_origin(self.services, origin):
                    raise Close(CLOSE_ORIGIN, "origin not allowed")
                try:
                    text = await asyncio.wait_for(
                        self.ws.receive_text(), self.settings.ws_auth_timeout_s
                    )
                except TimeoutError as exc:
                    raise Close(CLOSE_AUTH_TIMEOUT, "no auth frame in time") from exc
                try:
                    frame = Auth.model_validate_json(text)
                except ValidationError as exc:
                    raise Close(CLOSE_UNAUTHORIZED, "the first frame must be auth") from exc
                self.principal = await principal_from_api_key(
                    self.services, frame.api_key or "", self.ip
                )
        except AppError as exc:
            code = CLOSE_RATE_LIMITED if exc.code == "rate_limited" else CLOSE_UNAUTHORIZED
            raise Close(code, exc.code) from exc
        if not self.principal.can("events"):
            raise Close(CLOSE_ORIGIN, "the events permission is needed")

    async def _loop(self) -> None:
        while True:
            text = await self.ws.receive_text()
            try:
                frame = events_frames.validate_json(text)
            except ValidationError:
                self.outbox.send(error_frame("invalid_request", "Unknown or malformed frame."))
                continue
            if isinstance(frame, Ping):
                self.outbox.send({"type": "pong"})
            elif isinstance(frame, Subscribe):
                await self._subscribe(frame)
            else:
                self.outbox.send(error_frame("invalid_request", "Already authenticated."))

    def _wanted(self, record_type: str, site_id: str | None) -> bool:
        assert self.principal is not None
        if self.principal.site_id is not None and site_id != self.principal.site_id:
            return False
        if self.site_filter is not None and site_id != self.site_filter:
            return False
        return any(fnmatch.fnmatchcase(record_type, p) for p in self.patterns)

    def _public(self, record: EventRecord) -> dict[str, Any]:
        return {**to_event(record).public(), "offset": record.offset}

    async def _subscribe(self, frame: Subscribe) -> None:
        if self._live is not None:
            self._live.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._live
        self.patterns = list(frame.types) or ["*"]
        self.site_filter = frame.site_id
        subscribed = asyncio.Event()
        self._ready_for_live = asyncio.Event()
        self._live = asyncio.create_task(self._pump(subscribed))
        await subscribed.wait()
        async with self.services.db.read_scope() as session:
            epoch = await event_epoch(session)
            low, head = await offset_bounds(session)
            recovered, events = True, []
            since = frame.since
            if since is not None:
                recovered = self._recoverable(since.epoch, since.offset, epoch, low, head)
                if recovered:
                    rows = await events_between(
                        session, since.offset, head, limit=self.settings.events_window_size
                    )
                    oldest_allowed = utcnow() - timedelta(seconds=self.settings.events_window_age_s)
                    if rows and rows[0].at < oldest_allowed:
                        recovered = False
                    else:
                        events = [self._public(r) for r in rows if self._wanted(r.type, r.site_id)]
        self.last_offset = head
        self.outbox.send(
            {
                "type": "subscribed",
                "epoch": epoch,
                "offset": head,
                "recovered": recovered,
                "events": events if recovered else [],
            }
        )
        self._ready_for_live.set()

    def _recoverable(self, client_epoch: str, offset: int, epoch: str, low: int, head: int) -> bool:
        if client_epoch != epoch or offset > head:
            return False
        if head - offset > self.settings.events_window_size:
            return False
        # Everything after `offset` must still be kept (retention may have pruned the start).
        return offset >= low - 1 or head == 0

    async def _pump(self, subscribed: asyncio.Event) -> None:
        """Live events: subscribed before the replay is read, released after it is sent, so
        nothing committed in between is lost (offsets already replayed are skipped)."""
        async with self.services.broker.subscribe("events") as subscription:
            subscribed.set()
            await self._ready_for_live.wait()
            async for payload in subscription:
                if payload == RESYNC:
                    await self._fill(None)
                    continue
                envelope = orjson.loads(payload)
                offset = int(envelope["offset"])
                if offset <= self.last_offset:
                    continue
                if offset > self.last_offset + 1:
                    await self._fill(offset - 1)
                event = envelope["event"]
                self.last_offset = offset
                if self._wanted(event["type"], event.get("site_id")):
                    self.outbox.send({"type": "event", "offset": offset, "event": event})

    async def _notify(self, subscribed: asyncio.Event) -> None:
        """A signed-in operator's own notifications (`notification`, `notifications_read`
        frames), whatever they subscribed to; the list API is the source of truth after a gap."""
        assert self.principal is not None
        async with self.services.broker.subscribe(operator_channel(self.principal.id)) as feed:
            subscribed.set()
            async for payload in feed:
                if payload != RESYNC:
                    self.outbox.send(orjson.loads(payload))

    async def _fill(self, up_to: int | None) -> None:
        """Send the stored events after `last_offset` (up to `up_to`) that were not seen live."""
        while True:
            async with self.services.db.read_scope() as session:
                rows = await events_between(session, self.last_offset, up_to, limit=PAGE)
            for row in rows:
                self.last_offset = row.offset
                if self._wanted(row.type, row.site_id):
                    self.outbox.send(
                        {"type": "event", "offset": row.offset, "event": to_event(row).public()}
                    )
            if len(rows) < PAGE:
                return

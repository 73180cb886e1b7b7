"""`/ws/chat`: one visitor connection (docs/protocol.md, "Widget WebSocket").

Life of a connection: the handshake's `Origin` must be one some site allows (else 4403); the first
frame must be `auth` within the auth timeout (else 4408) with a valid access token (else 4401)
whose site allows the origin (else 4403); connection limits apply (4429). Then `join`, `send`,
`typing`, `ping` in any order. Frames are answered on the connection's `Outbox`; every joined
conversation has a `ConversationFeed` in the process's `ConversationHub`, which keeps delivery
complete and ordered.

A connection is many per process and mostly idle, so it holds little: this object (slotted), its
outbox, a feed per joined conversation, the token-expiry timer, and the one coroutine that reads
its frames. It is spoken in plain ASGI (`AsgiSocket`), dispatched ahead of the middleware stack;
on uvicorn's `websockets-sansio` without compression its outbox writes frames straight to the
transport (`frontdesk/realtime/wire.py`), everywhere else through the server's `send`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.types import Receive, Scope
from starlette.types import Send as AsgiSend

from frontdesk.api.deps import check_origin
from frontdesk.chat import accept_visitor_message
from frontdesk.errors import AppError
from frontdesk.observability import metrics
from frontdesk.queries.conversations import access_conversation
from frontdesk.queries.sites import SiteView
from frontdesk.realtime.feed import ConversationFeed
from frontdesk.realtime.frames import (
    CLOSE_AUTH_TIMEOUT,
    CLOSE_ORIGIN,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
    Auth,
    Join,
    Leave,
    Ping,
    Send,
    Typing,
    chat_frames,
    error_frame,
)
from frontdesk.realtime.sockets import AsgiSocket, Close, Disconnected, connection_outbox
from frontdesk.security.tokens import VisitorClaims
from frontdesk.services import Services

log = logging.getLogger(__name__)
CHAT_PATH = "/ws/chat"
MAX_JOINED = 20
ABUSE_LIMIT = 10  # rate-limited frames within ABUSE_WINDOW_S before the socket is closed
ABUSE_WINDOW_S = 60.0
_closing: set[asyncio.Task[None]] = set()  # closes on token expiry, referenced until done


class ChatSocket(AsgiSocket):
    __slots__ = (
        "_expiry",
        "_rate_limited_at",
        "claims",
        "feeds",
        "ip",
        "origin",
        "outbox",
        "services",
        "site",
    )

    def __init__(
        self, scope: Scope, receive: Receive, send: AsgiSend, services: Services, ip: str | None
    ) -> None:
        super().__init__(scope, receive, send, CHAT_PATH)
        self.services = services
        self.ip = ip
        self.origin = self.header(b"origin")
        self.claims: VisitorClaims | None = None
        self.site: SiteView | None = None
        self.feeds: dict[str, ConversationFeed] = {}
        self.outbox = connection_outbox(self, services)
        self._rate_limited_at: list[float] | None = None
        self._expiry: int | None = None  # the token's bucket in `services.token_deadlines`

    async def run(self) -> None:
        await self.accept()
        # uvicorn's websockets-sansio without compression: frames go straight to the transport,
        # and a slow consumer that stops reading is cut off when a pong would be overdue.
        wire = self.direct_wire(self.services.settings.ws_pong_timeout_s)
        if wire is not None:
            self.outbox.use_wire(wire)
        limits = self.services.connection_limits
        acquired = False
        try:
            await self._check_handshake_origin()
            await self._authenticate()
            assert self.claims is not None
            acquired = limits.acquire(self.ip, self.claims.site_id)
            if not acquired:
                raise Close(CLOSE_RATE_LIMITED, "too many connections")
            self.outbox.send(
                {
                    "type": "ready",
                    "visitor_id": self.claims.visitor_id,
                    "heartbeat_s": self.services.settings.ws_heartbeat_s,
                }
            )
            self._schedule_expiry()
            # An idle connection waits here. Nothing of the previous frame stays referenced
            # while it waits (no local variable holds it).
            while True:
                await self._handle(self.text_of(await self.receive()))
        except Close as close:
            await self.outbox.drain(0.5)
            await self.close(close.code, close.reason)
        except Disconnected:
            pass
        finally:
            if acquired:
                limits.release(self.ip, self.claims.site_id if self.claims else None)
            if self._expiry is not None:
                self.services.token_deadlines.clear(self, self._expiry)
            for feed in self.feeds.values():
                await self.services.hub.unfollow(feed)
            await self.outbox.stop()

    async def _check_handshake_origin(self) -> None:
        if self.origin is None:
            return  # native clients; the site decides after auth
        if not await self.services.known_origins.allows(self.origin):
            metrics.origin_rejected("handshake")
            raise Close(CLOSE_ORIGIN, "origin not allowed")

    async def _authenticate(self) -> None:
        try:
            async with asyncio.timeout(self.services.settings.ws_auth_timeout_s):
                text = self.text_of(await self.receive())
        except TimeoutError as exc:
            raise Close(CLOSE_AUTH_TIMEOUT, "no auth frame in time") from exc
        try:
            frame = Auth.model_validate_json(text or "")
        except ValidationError as exc:
            raise Close(CLOSE_UNAUTHORIZED, "the first frame must be auth") from exc
        await self._apply_auth(frame)

    async def _apply_auth(self, frame: Auth) -> None:
        try:
            claims = self.services.tokens.decode(frame.access_token or "")
            site = await self.services.sites.get(claims.site_id)
        except AppError as exc:
            raise Close(CLOSE_UNAUTHORIZED, exc.code) from exc
        if self.claims is not None and claims.visitor_id != self.claims.visitor_id:
            raise Close(CLOSE_UNAUTHORIZED, "a connection belongs to one visitor")
        try:
            check_origin(self.services, site, self.origin)
        except AppError as exc:
            raise Close(CLOSE_ORIGIN, "origin not allowed") from exc
        self.claims, self.site = claims, site

    def _schedule_expiry(self) -> None:
        """Close with 4401 when the access token expires, unless a fresh `auth` came first."""
        assert self.claims is not None
        deadlines = self.services.token_deadlines
        self._expiry = deadlines.set(self, self.claims.expires_at, self._expiry)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with `code`: no frame is written from here on, even while the server's close
        waits for a transport that pushes back (frames on a direct wire would otherwise still
        go out ahead of it)."""
        self.outbox.close()
        await super().close(code, reason)

    def expired(self) -> None:
        self._expiry = None
        task = asyncio.get_running_loop().create_task(
            self.close(CLOSE_UNAUTHORIZED, "token expired")
        )
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _handle(self, text: str | None) -> None:
        """One client frame: parsed, checked against the contract, then acted on; anything else
        is answered with an `invalid_request` error frame."""
        raw = None
        if text is not None:
            with contextlib.suppress(orjson.JSONDecodeError):
                raw = orjson.loads(text)
        if not isinstance(raw, dict):
            self.outbox.send(error_frame("invalid_request", "Frames are JSON objects."))
            return
        try:
            frame = chat_frames.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            self.outbox.send(
                error_frame("invalid_request", f"{where}: {first.get('msg')}".strip(": "))
            )
            return
        await self._dispatch(frame)

    async def _dispatch(self, frame: Auth | Join | Leave | Send | Typing | Ping) -> None:
        if isinstance(frame, Ping):
            self.outbox.send({"type": "pong"})
        elif isinstance(frame, Auth):
            await self._apply_auth(frame)
            self._schedule_expiry()
        elif isinstance(frame, Join):
            await self._join(frame)
        elif isinstance(frame, Leave):
            feed = self.feeds.pop(frame.conversation_id, None)
            if feed is not None:
                await self.services.hub.unfollow(feed)
        elif isinstance(frame, Send):
            await self._send_message(frame)
        else:
            await self._typing(frame)

    async def _check_access(self, conversation_id: str) -> bool:
        assert self.claims is not None
        try:
            async with self.services.db.read_scope() as session:
                await access_conversation(session, self.claims, conversation_id)
        except AppError as exc:
            frame = error_frame(exc.code, exc.message, conversation_id=conversation_id)
            self.outbox.send(frame)
            return False
        return True

    async def _join(self, frame: Join) -> None:
        if not await self._check_access(frame.conversation_id):
            return
        hub = self.services.hub
        previous = self.feeds.pop(frame.conversation_id, None)
        if previous is not None:
            await hub.unfollow(previous)
        if len(self.feeds) >= MAX_JOINED:
            self.outbox.send(error_frame("invalid_request", f"Join at most {MAX_JOINED}."))
            return
        feed = ConversationFeed(frame.conversation_id, self.outbox, frame.after_seq)
        self.feeds[frame.conversation_id] = feed
        messages, has_more = await hub.follow(feed)
        self.outbox.send(
            {
                "type": "joined",
                "conversation_id": frame.conversation_id,
                "messages": messages,
                "has_more": has_more,
                "last_seq": feed.last_seq,
            }
        )
        hub.go_live(feed, has_more)

    async def _send_message(self, frame: Send) -> None:
        assert self.claims is not None and self.site is not None
        try:
            accepted = await accept_visitor_message(
                self.services,
                self.site,
                self.claims,
                conversation_id=frame.conversation_id,
                client_id=frame.client_id,
                text=frame.text,
                ip=self.ip,
            )
        except AppError as exc:
            extra: dict[str, Any] = {"client_id": frame.client_id}
            if exc.code == "rate_limited":
                extra["retry_after"] = int(exc.headers.get("Retry-After", "1"))
                self._note_rate_limited()
            self.outbox.send(error_frame(exc.code, exc.message, **extra))
            return
        message = accepted.stored.message
        self.outbox.send(
            {
                "type": "ack",
                "client_id": frame.client_id,
                "message_id": message.id,
                "seq": message.seq,
            }
        )

    def _note_rate_limited(self) -> None:
        now = time.monotonic()
        recent = [t for t in self._rate_limited_at or () if now - t < ABUSE_WINDOW_S]
        recent.append(now)
        self._rate_limited_at = recent
        if len(recent) > ABUSE_LIMIT:
            raise Close(CLOSE_RATE_LIMITED, "rate limited")

    async def _typing(self, frame: Typing) -> None:
        if frame.conversation_id not in self.feeds:
            return  # typing is only relayed for conversations this connection has joined
        payload = {
            "kind": "typing",
            "frame": {
                "type": "typing",
                "conversation_id": frame.conversation_id,
                "role": "visitor",
            },
        }
        await self.services.broker.publish(
            f"conversation:{frame.conversation_id}", orjson.dumps(payload)
        )

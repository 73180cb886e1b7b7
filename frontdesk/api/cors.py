"""CORS for the widget API: answers name only allowed origins, never `*`.

A preflight carries no site id, so it is answered for any origin that some site allows (or the
FrontDesk origin itself); the request that follows is checked against its own site's list by the
route. Widget calls carry a bearer token, not cookies, so credentials are never allowed.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frontdesk.observability import metrics

WIDGET_PREFIX = "/api/widget/"
ALLOW_METHODS = b"GET, POST, OPTIONS"
ALLOW_HEADERS = b"Authorization, Content-Type, Accept, Last-Event-ID"


class WidgetCors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def _allowed(self, scope: Scope, origin: str) -> bool:
        allowed: bool = await scope["app"].state.services.known_origins.allows(origin)
        return allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(WIDGET_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin_raw = headers.get(b"origin")
        if origin_raw is None:
            await self.app(scope, receive, send)
            return
        origin = origin_raw.decode("latin-1")
        allowed = await self._allowed(scope, origin)
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await self._preflight(send, origin, allowed)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and allowed:
                extra = [
                    (b"access-control-allow-origin", origin_raw),
                    (b"vary", b"Origin"),
                    (b"access-control-expose-headers", b"Retry-After"),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, origin: str, allowed: bool) -> None:
        if allowed:
            status, body = 204, b""
            headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", b"600"),
                (b"vary", b"Origin"),
            ]
        else:
            metrics.origin_rejected("preflight")
            status = 403
            body = orjson.dumps(
                {"error": {"code": "origin_not_allowed", "message": "This origin is not allowed."}}
            )
            headers = [(b"content-type", b"application/json"), (b"vary", b"Origin")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

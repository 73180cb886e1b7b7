"""Request ids: one per HTTP request or WebSocket, carried by every log line it causes.

A sane inbound `X-Request-ID` (from a proxy or a client that wants to correlate) is kept;
anything else is replaced by a fresh random id. The id is echoed in the `X-Request-ID` response
header, kept in `scope["state"]` (so the 500 handler, which runs outside this middleware, still
finds it) and in a context variable that the log filter reads. Work started during the request,
such as a chat turn's task, inherits the id.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
# Letters, digits and a few separators; long enough for a UUID or a proxy's trace-style id, too
# short and too plain to smuggle anything into a log line or a header.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")

request_id_var: ContextVar[str | None] = ContextVar("frontdesk_request_id", default=None)


def new_request_id() -> str:
    return secrets.token_hex(16)


def accepted_request_id(value: bytes | None) -> str | None:
    if not value:
        return None
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if _SANE.fullmatch(text) else None


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        inbound = next((v for k, v in scope.get("headers", ()) if k == HEADER), None)
        request_id = accepted_request_id(inbound) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == HEADER for name, _ in headers):
                    headers.append((HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        finally:
            request_id_var.reset(token)

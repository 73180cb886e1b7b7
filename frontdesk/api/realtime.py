"""The WebSocket endpoints: `/ws/chat` for visitors and `/ws/events` for operators and integrations.

`/ws/chat` may have tens of thousands of mostly idle connections per process, so `FrontDeskApp`
serves it before the app's middleware stack, in plain ASGI: a connection's life then holds its own
coroutine and nothing of the stack (every middleware, and FastAPI's and Starlette's own entry
points, keep a coroutine for as long as the connection lasts). None of the HTTP middleware applies
to a WebSocket session anyway (security headers, compression, CORS, body and query limits); what
does is done here or by the socket: the request id on log lines, and the WebSocket metrics
(`AsgiSocket`, the same series the metrics middleware keeps for other endpoints). Every check of
the handshake and the session is the socket's own (origin, auth, limits). Chat sessions are not
traced. `/ws/events` (a few dashboards and integrations) stays an ordinary route.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, WebSocket
from starlette.types import Receive, Scope, Send

from frontdesk.observability import metrics
from frontdesk.observability.context import HEADER as REQUEST_ID_HEADER
from frontdesk.observability.context import accepted_request_id, new_request_id, request_id_var
from frontdesk.realtime.chat_socket import CHAT_PATH, ChatSocket
from frontdesk.realtime.event_socket import EventSocket
from frontdesk.security.client_ip import client_ip
from frontdesk.services import Services

router = APIRouter()


def _services(ws: WebSocket) -> Services:
    services: Services = ws.app.state.services
    return services


def _ip(ws: WebSocket, services: Services) -> str | None:
    peer = ws.client.host if ws.client else None
    return client_ip(peer, ws.headers.get("x-forwarded-for"), services.settings.trusted_proxies)


@router.websocket("/ws/events")
async def event_socket(ws: WebSocket) -> None:
    services = _services(ws)
    await EventSocket(ws, services, _ip(ws, services)).run()


def _route_path(scope: Scope) -> str:
    """The path the app's routes see: without the `root_path` a proxy mounted it under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


class FrontDeskApp(FastAPI):
    """The FastAPI app, with `/ws/chat` served before its middleware stack (see above)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or _route_path(scope) != CHAT_PATH:
            await super().__call__(scope, receive, send)
            return
        services: Services = self.state.services
        inbound = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER), None)
        request_id = accepted_request_id(inbound) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        peer = scope["client"][0] if scope.get("client") else None
        forwarded = next((v for k, v in scope["headers"] if k == b"x-forwarded-for"), None)
        ip = client_ip(
            peer,
            forwarded.decode("latin-1") if forwarded is not None else None,
            services.settings.trusted_proxies,
        )
        socket = ChatSocket(scope, receive, send, services, ip)
        failed = False
        try:
            await socket.run()
        except Exception:
            failed = True
            metrics.server_error("websocket")
            raise
        finally:
            socket.finished(failed)
            request_id_var.reset(token)

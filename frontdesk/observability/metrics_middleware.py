"""The ASGI middleware that counts HTTP requests and WebSocket connections for `/metrics`.

A plain ASGI class, outermost in the stack, so that it sees every response, including those the
other middleware answer themselves (body limit, repeated query, CORS preflight). The route label
is the template of the route the router matched (`/api/v1/sites/{site_id}`), read from the scope
after the app ran; requests answered before routing, or by no route, are `unmatched`. The raw
path never becomes a label. Per request it adds two clock reads, one wrapped `send`, a dict
lookup and two metric updates; per WebSocket frame, one counter increment.

Since FastAPI 0.137 the route in the scope of an included router carries its path without the
router's prefix (`/{conversation_id}/messages`), so templates come from FastAPI's own flattened
view of the app (`iter_route_contexts`), mapped once per route object. (Older FastAPI versions,
without it, put the full template in the scope.)
"""

from __future__ import annotations

import time
from typing import Any

import fastapi.routing
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frontdesk.observability import metrics

_ITER_ROUTE_CONTEXTS: Any = getattr(fastapi.routing, "iter_route_contexts", None)
_ROUTE_CONTEXT: Any = getattr(fastapi.routing, "RouteContext", None)


def _path_format(route: Any) -> str:
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) and template else metrics.UNMATCHED


class RouteTemplates:
    """The full template of the route a request matched."""

    def __init__(self) -> None:
        # id → (route, template): the route is kept, so its id cannot be reused meanwhile.
        self._known: dict[int, tuple[Any, str]] = {}

    def _learn(self, app: Any) -> None:
        if _ITER_ROUTE_CONTEXTS is None:
            return
        for context in _ITER_ROUTE_CONTEXTS(app.routes):
            route = context.original_route
            self._known[id(route)] = (route, context.path_format or _path_format(route))

    def __call__(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return metrics.UNMATCHED
        if _ROUTE_CONTEXT is not None and isinstance(route, _ROUTE_CONTEXT):
            return route.path_format or metrics.UNMATCHED
        known = self._known.get(id(route))
        if known is None:
            self._learn(scope["app"])  # first request, or a route added since
            known = self._known.get(id(route))
            if known is None:  # not part of the app's tree: take what it says
                known = self._known[id(route)] = (route, _path_format(route))
        return known[1]


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route_template = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except Exception:
            metrics.server_error("http")
            # The server's error handler answers 500 unless the response had already started.
            status = status or 500
            raise
        finally:
            # status 0: cancelled before any response (shutdown, client gone); nothing to count.
            if status:
                route = self.route_template(scope)
                metrics.observe_http(route, scope["method"], status, time.perf_counter() - started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The route is known once the router ran, which is before the app's first receive/send.
        found: metrics.WebSocketMetrics | None = None
        accepted = closed = False

        def endpoint() -> metrics.WebSocketMetrics:
            nonlocal found
            if found is None:
                found = metrics.websocket_metrics(self.route_template(scope))
            return found

        async def counting_receive() -> Message:
            nonlocal closed
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                endpoint().received.inc()
            elif kind == "websocket.disconnect" and not closed:
                closed = True
                endpoint().closed(int(message.get("code", 1005)), "client")
            return message

        async def counting_send(message: Message) -> None:
            nonlocal accepted, closed
            kind = message["type"]
            if kind == "websocket.send":
                endpoint().sent.inc()
            elif kind == "websocket.accept":
                accepted = True
                endpoint().opened.inc()
                endpoint().open.inc()
            elif kind == "websocket.close" and not closed:
                closed = True
                endpoint().closed(int(message.get("code", 1000)), "server")
            await send(message)

        failed = False
        try:
            await self.app(scope, counting_receive, counting_send)
        except Exception:
            failed = True
            metrics.server_error("websocket")
            raise
        finally:
            if accepted:
                endpoint().open.dec()
                if not closed:  # the server closes what the app left open: 1011 after a crash
                    endpoint().closed(1011 if failed else 1000, "server")

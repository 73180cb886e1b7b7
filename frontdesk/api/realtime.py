"""The WebSocket routes: `/ws/chat` for visitors and `/ws/events` for operators and integrations."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from frontdesk.realtime.chat_socket import ChatSocket
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


@router.websocket("/ws/chat")
async def chat_socket(ws: WebSocket) -> None:
    services = _services(ws)
    await ChatSocket(ws, services, _ip(ws, services)).run()


@router.websocket("/ws/events")
async def event_socket(ws: WebSocket) -> None:
    services = _services(ws)
    await EventSocket(ws, services, _ip(ws, services)).run()

"""Serving the app with uvicorn: the one place that sets the HTTP and WebSocket server options.

WebSocket options come from settings: protocol pings (`ws_heartbeat_s`) with a pong deadline
(`ws_pong_timeout_s`), the frame size limit (`ws_max_frame_bytes`, bigger frames close with 1009)
and per-message deflate, off unless enabled. The WebSocket implementation is chosen by measurement
(docs/decisions/0008-websocket-server.md).
"""

from __future__ import annotations

from typing import Any

import uvicorn

from frontdesk.config import Settings

WS_IMPLEMENTATION = "websockets-sansio"


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers propagate to the JSON handler
        proxy_headers=False,
        ws=WS_IMPLEMENTATION,
        ws_max_size=settings.ws_max_frame_bytes,
        ws_ping_interval=settings.ws_heartbeat_s,
        ws_ping_timeout=settings.ws_pong_timeout_s,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        timeout_graceful_shutdown=10,
    )

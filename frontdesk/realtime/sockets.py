"""What `/ws/chat` and `/ws/events` share: the close signal and the connection's outbox.

`Close` ends a connection with a contract close code. `connection_outbox` gives a socket its
bounded outbox; when the client falls behind, it is counted and closed with `CLOSE_SLOW_CONSUMER`.
"""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket

from frontdesk.realtime.frames import CLOSE_SLOW_CONSUMER
from frontdesk.realtime.outbox import Outbox
from frontdesk.services import Services


class Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=reason)


def connection_outbox(ws: WebSocket, services: Services) -> Outbox:
    async def overflowed() -> None:
        services.realtime_stats["slow_consumers"] += 1
        await close_quietly(ws, CLOSE_SLOW_CONSUMER, "too slow: send queue full")

    return Outbox(
        ws.send_text,
        max_bytes=services.settings.ws_send_queue_bytes,
        flush_ms=services.settings.ws_delta_flush_ms,
        on_overflow=overflowed,
    )

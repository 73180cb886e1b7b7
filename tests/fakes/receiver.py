"""A webhook receiver on loopback: records every request and answers as the test scripts it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int = 0


@dataclass
class WebhookReceiver:
    """`answer(request_number) -> (status, headers)`; `delay_s` holds each response."""

    answer: Callable[[int], tuple[int, dict[str, str]]] = lambda _: (200, {})
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status, extra = self.answer(len(self.received) + 1)
        self.received.append(Received(headers, body, status))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in extra.items()],
            }
        )
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"nope"})

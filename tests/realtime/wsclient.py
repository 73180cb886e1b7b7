"""A small WebSocket test client speaking the FrontDesk frames."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ORIGIN


class Socket:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, frame: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        frame: dict[str, Any] = json.loads(raw)
        return frame

    async def recv_until(self, predicate: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Frames up to and including the first one matching `predicate`."""
        frames = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(max(0.01, remaining))
            frames.append(frame)
            if predicate(frame):
                return frames

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; the close code."""
        try:
            while True:
                await asyncio.wait_for(self.connection.recv(), timeout)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    async def close(self) -> None:
        await self.connection.close()


async def open_socket(
    server: str, path: str = "/ws/chat", origin: str | None = ORIGIN, **kwargs: Any
) -> Socket:
    connection = await connect(
        f"ws://{server}{path}",
        origin=origin,  # type: ignore[arg-type]
        max_size=None,
        open_timeout=5,
        **kwargs,
    )
    return Socket(connection)


async def chat_socket(server: str, access_token: str, origin: str | None = ORIGIN) -> Socket:
    socket = await open_socket(server, origin=origin)
    await socket.send({"type": "auth", "access_token": access_token})
    ready = await socket.recv()
    assert ready["type"] == "ready", ready
    return socket

"""Protocol heartbeats: a client that never answers pings is closed; one that answers stays."""

from __future__ import annotations

import asyncio
import json

import wsproto
import wsproto.events as ev
from fastapi import FastAPI

from frontdesk.config import Settings
from tests.conftest import ORIGIN, Visitor, serving


async def raw_client(address: str, token: str, *, answer_pings: bool, seconds: float) -> str:
    """A minimal client on wsproto that can ignore pings; returns how the connection ended."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    writer.write(
        conn.send(
            ev.Request(
                host=address, target="/ws/chat", extra_headers=[(b"origin", ORIGIN.encode())]
            )
        )
    )
    ended = "open"
    sent_auth = False
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        while asyncio.get_running_loop().time() < deadline:
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                continue
            if not data:
                return "eof" if ended == "open" else ended
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, ev.AcceptConnection) and not sent_auth:
                    writer.write(
                        conn.send(
                            ev.TextMessage(json.dumps({"type": "auth", "access_token": token}))
                        )
                    )
                    sent_auth = True
                elif isinstance(event, ev.Ping) and answer_pings:
                    writer.write(conn.send(event.response()))
                elif isinstance(event, ev.CloseConnection):
                    ended = f"closed {event.code}"
                    return ended
            await writer.drain()
    finally:
        writer.close()
    return ended


async def test_silent_client_is_dropped_and_live_one_kept(
    app: FastAPI, settings: Settings, visitor: Visitor
) -> None:
    settings.ws_heartbeat_s = 0.3
    settings.ws_pong_timeout_s = 0.3
    async with serving(app, settings) as address:
        silent, alive = await asyncio.gather(
            raw_client(address, visitor.access_token, answer_pings=False, seconds=4),
            raw_client(address, visitor.access_token, answer_pings=True, seconds=2),
        )
    assert silent in ("eof", "closed 1011")  # dropped for want of a pong
    assert alive == "open"

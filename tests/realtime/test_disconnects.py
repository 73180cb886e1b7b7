"""Abrupt disconnects while messages keep coming: after resuming by `seq`, the client has every
message exactly once, in order."""

from __future__ import annotations

import asyncio

import pytest

from frontdesk.actions.messages import do_create_message
from frontdesk.services import Services
from tests.conftest import Visitor
from tests.realtime.wsclient import Socket, chat_socket


async def producer(services: Services, conversation_id: str, count: int, every_s: float) -> None:
    for i in range(count):
        async with services.db.session_scope() as session:
            await do_create_message(
                session, conversation_id=conversation_id, role="system", text=f"n{i}"
            )
        await asyncio.sleep(every_s)


async def collect(socket: Socket, seqs: list[int], until: float) -> None:
    while asyncio.get_running_loop().time() < until:
        try:
            frame = await socket.recv(timeout=0.2)
        except TimeoutError:
            continue
        if frame["type"] == "joined":
            seqs.extend(m["seq"] for m in frame["messages"])
        elif frame["type"] == "message":
            seqs.append(frame["message"]["seq"])


@pytest.mark.parametrize("offline_s", [1.0, 10.0])
async def test_abrupt_disconnect_then_resume(
    live_server: str, services: Services, visitor: Visitor, offline_s: float
) -> None:
    conversation_id = await visitor.conversation()
    count, every = (40, 0.05) if offline_s < 5 else (60, 0.2)
    seqs: list[int] = []
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.send({"type": "join", "conversation_id": conversation_id, "after_seq": 0})
    produce = asyncio.create_task(producer(services, conversation_id, count, every))
    loop = asyncio.get_running_loop()
    await collect(socket, seqs, loop.time() + 0.5)
    socket.connection.transport.abort()  # no close frame: the network just went away
    await asyncio.sleep(offline_s)
    again = await chat_socket(live_server, visitor.access_token)
    await again.send(
        {"type": "join", "conversation_id": conversation_id, "after_seq": seqs[-1] if seqs else 0}
    )
    await produce
    await collect(again, seqs, loop.time() + 1.0)
    await again.close()
    assert seqs == list(range(1, count + 1))  # no gap, no duplicate

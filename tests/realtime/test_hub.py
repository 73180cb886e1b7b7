"""The conversation hub: one broker listener per conversation shared by every local connection,
repairs for all of them at once, and nothing left behind when connections go."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from frontdesk.actions.messages import do_create_message
from frontdesk.realtime import feed as feed_module
from frontdesk.realtime import hub as hub_module
from frontdesk.realtime.broker import MemoryBroker
from frontdesk.services import Services
from tests.conftest import Visitor
from tests.realtime.wsclient import Socket, chat_socket


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` holds (the server finishes a closed connection on its own time)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def store(services: Services, conversation_id: str, text: str) -> None:
    async with services.db.session_scope() as session:
        await do_create_message(session, conversation_id=conversation_id, role="system", text=text)


async def store_unpublished(services: Services, conversation_id: str, text: str) -> None:
    """A message whose publication is lost (as when a process dies between commit and publish)."""
    publisher = services.db.publisher
    services.db.publisher = None
    try:
        await store(services, conversation_id, text)
    finally:
        services.db.publisher = publisher


async def joined(socket: Socket, conversation_id: str, after_seq: int = 0) -> dict:  # type: ignore[type-arg]
    await socket.send({"type": "join", "conversation_id": conversation_id, "after_seq": after_seq})
    frames = await socket.recv_until(lambda f: f["type"] == "joined")
    return frames[-1]


def conversation_channels(services: Services) -> list[str]:
    broker = services.broker
    assert isinstance(broker, MemoryBroker)
    return [c for c in broker.channels if c.startswith("conversation:")]


async def texts_until(socket: Socket, last: str) -> list[str]:
    frames = await socket.recv_until(
        lambda f: f["type"] == "message" and f["message"]["text"] == last
    )
    return [f["message"]["text"] for f in frames if f["type"] == "message"]


async def test_connections_on_one_conversation_share_one_subscription(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    first = await chat_socket(live_server, visitor.access_token)
    second = await chat_socket(live_server, visitor.access_token)
    await joined(first, conversation_id)
    await joined(second, conversation_id)
    channel = services.hub.channel(conversation_id)
    assert channel is not None and len(channel.feeds) == 2
    assert conversation_channels(services) == [f"conversation:{conversation_id}"]

    await store(services, conversation_id, "to both")
    assert await texts_until(first, "to both") == ["to both"]
    assert await texts_until(second, "to both") == ["to both"]

    # one leaves: the other keeps receiving on the same subscription
    await first.close()
    await eventually(lambda: len(channel.feeds) == 1)
    await store(services, conversation_id, "to the one left")
    assert await texts_until(second, "to the one left") == ["to the one left"]

    await second.close()
    await eventually(lambda: services.hub.conversations == [])
    assert conversation_channels(services) == []


async def test_nothing_is_left_behind_after_many_connections(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    conversations = [await visitor.conversation() for _ in range(3)]
    for _ in range(2):
        sockets = [await chat_socket(live_server, visitor.access_token) for _ in range(4)]
        for i, socket in enumerate(sockets):
            await joined(socket, conversations[i % 3])
            if i == 0:  # leave and join again on the same connection
                await socket.send({"type": "leave", "conversation_id": conversations[0]})
                await joined(socket, conversations[0])
        assert sorted(services.hub.conversations) == sorted(conversations)
        assert len(services.token_deadlines) == 4
        sockets[1].connection.transport.abort()  # one goes without a close frame
        await asyncio.gather(*(s.close() for s in sockets if s is not sockets[1]))
        await eventually(
            lambda: services.hub.conversations == [] and services.connection_limits.total == 0
        )
        assert conversation_channels(services) == []
        assert len(services.token_deadlines) == 0


async def test_a_lost_publication_with_nothing_after_it_is_repaired_by_the_quiet_check(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    services.settings.ws_feed_check_s = 0.2
    conversation_id = await visitor.conversation()
    sockets = [await chat_socket(live_server, visitor.access_token) for _ in range(2)]
    for socket in sockets:
        await joined(socket, conversation_id)
    await asyncio.sleep(0.5)  # a quiet spell, then a message whose publication is lost
    await store_unpublished(services, conversation_id, "never published")
    for socket in sockets:
        assert await texts_until(socket, "never published") == ["never published"]


async def test_resync_from_the_broker_repairs_every_follower_in_order(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    sockets = [await chat_socket(live_server, visitor.access_token) for _ in range(3)]
    for socket in sockets:
        await joined(socket, conversation_id)
    for i in range(3):
        await store_unpublished(services, conversation_id, f"lost {i}")
    broker = services.broker
    assert isinstance(broker, MemoryBroker)
    broker.resync_all()  # what the Redis broker does when it reconnects
    for socket in sockets:
        assert await texts_until(socket, "lost 2") == ["lost 0", "lost 1", "lost 2"]


async def test_joining_far_behind_gets_the_rest_after_joined(
    live_server: str, services: Services, visitor: Visitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "PAGE", 3)
    monkeypatch.setattr(hub_module, "PAGE", 3)
    conversation_id = await visitor.conversation()
    for i in range(8):
        await store(services, conversation_id, f"m{i}")
    socket = await chat_socket(live_server, visitor.access_token)
    first = await joined(socket, conversation_id)
    assert [m["text"] for m in first["messages"]] == ["m0", "m1", "m2"]
    assert first["has_more"] is True and first["last_seq"] == 3
    await store(services, conversation_id, "live")
    rest = await texts_until(socket, "live")
    assert rest == ["m3", "m4", "m5", "m6", "m7", "live"]  # in order, nothing twice


async def test_a_binary_frame_is_refused_with_an_error(live_server: str, visitor: Visitor) -> None:
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.connection.send(b"\x00\x01")
    error = await socket.recv()
    assert error["type"] == "error" and error["code"] == "invalid_request"
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"
    await socket.close()

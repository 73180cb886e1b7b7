"""`/ws/chat` conformance: every frame type and close code of the contract."""

from __future__ import annotations

import asyncio
import json

import pytest

from frontdesk.actions.messages import do_create_message
from frontdesk.services import Services
from tests.conftest import SiteInfo, Visitor, make_site, start_visitor
from tests.realtime.wsclient import chat_socket, open_socket


def is_answer(frame: dict) -> bool:  # type: ignore[type-arg]
    return frame["type"] == "message" and frame["message"]["role"] == "assistant"


async def test_ready_join_send_ack_message_delta(live_server: str, visitor: Visitor) -> None:
    conversation_id = await visitor.conversation()
    await visitor.send(conversation_id, "earlier", client_id="e1")
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.send({"type": "join", "conversation_id": conversation_id, "after_seq": 0})
    joined = await socket.recv()
    assert joined["type"] == "joined" and joined["conversation_id"] == conversation_id
    assert joined["has_more"] is False
    # the first answer may still be in flight; the feed delivers whatever follows in order
    seqs = [m["seq"] for m in joined["messages"]]
    assert seqs[0] == 1 and joined["last_seq"] == seqs[-1]
    if joined["last_seq"] < 2:
        await socket.recv_until(is_answer)

    await socket.send(
        {"type": "send", "conversation_id": conversation_id, "client_id": "c1", "text": "hello"}
    )
    frames = await socket.recv_until(is_answer)
    ack = next(f for f in frames if f["type"] == "ack")
    assert ack["client_id"] == "c1" and ack["seq"] == 3 and ack["message_id"].startswith("msg_")
    messages = [f["message"] for f in frames if f["type"] == "message"]
    assert [m["seq"] for m in messages] == [3, 4]
    assert messages[0]["id"] == ack["message_id"]
    assert any(f["type"] == "delta" and f["message_id"] == messages[1]["id"] for f in frames)

    await socket.send(
        {"type": "send", "conversation_id": conversation_id, "client_id": "c1", "text": "hello"}
    )
    again = await socket.recv_until(lambda f: f["type"] == "ack")
    assert again[-1]["message_id"] == ack["message_id"]  # acknowledged again, stored once

    await socket.send({"type": "ping"})
    assert (await socket.recv_until(lambda f: f["type"] == "pong"))[-1] == {"type": "pong"}
    await socket.close()


async def test_resume_after_seq_gets_exactly_what_was_missed(
    live_server: str, visitor: Visitor, services: Services
) -> None:
    conversation_id = await visitor.conversation()
    for i in range(3):
        await visitor.send(conversation_id, f"m{i}")
    await services.turns.drain()
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.send({"type": "join", "conversation_id": conversation_id, "after_seq": 4})
    joined = await socket.recv()
    assert [m["seq"] for m in joined["messages"]] == [5, 6]
    await socket.close()


async def test_gap_in_live_stream_is_filled_from_the_database(
    live_server: str, visitor: Visitor, services: Services
) -> None:
    conversation_id = await visitor.conversation()
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.send({"type": "join", "conversation_id": conversation_id, "after_seq": 0})
    await socket.recv()
    publisher = services.db.publisher
    services.db.publisher = None  # the next commit's publication is lost
    try:
        async with services.db.session_scope() as session:
            await do_create_message(
                session, conversation_id=conversation_id, role="system", text="lost"
            )
    finally:
        services.db.publisher = publisher
    async with services.db.session_scope() as session:
        await do_create_message(
            session, conversation_id=conversation_id, role="system", text="seen"
        )
    frames = await socket.recv_until(
        lambda f: f["type"] == "message" and f["message"]["text"] == "seen"
    )
    texts = [f["message"]["text"] for f in frames if f["type"] == "message"]
    assert texts == ["lost", "seen"]
    await socket.close()


async def test_join_someone_elses_conversation(
    live_server: str, client, site: SiteInfo, visitor: Visitor
) -> None:  # type: ignore[no-untyped-def]
    other = await start_visitor(client, site.id)
    theirs = await other.conversation()
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.send({"type": "join", "conversation_id": theirs, "after_seq": 0})
    error = await socket.recv()
    assert error["type"] == "error" and error["code"] == "not_found"
    await socket.send({"type": "send", "conversation_id": theirs, "client_id": "x", "text": "hi"})
    error = await socket.recv()
    assert error["code"] == "not_found" and error["client_id"] == "x"
    await socket.close()


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        json.dumps({"type": "teleport"}),
        json.dumps({"type": "join"}),
        json.dumps({"type": "send", "conversation_id": "c", "client_id": "x", "text": 5}),
    ],
)
async def test_malformed_frames_get_error_frames(
    live_server: str, visitor: Visitor, frame: str
) -> None:
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.connection.send(frame)
    error = await socket.recv()
    assert error["type"] == "error" and error["code"] == "invalid_request"
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"  # the connection survives
    await socket.close()


async def test_bad_text_in_send(live_server: str, visitor: Visitor) -> None:
    conversation_id = await visitor.conversation()
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.send(
        {"type": "send", "conversation_id": conversation_id, "client_id": "c", "text": "  "}
    )
    error = await socket.recv()
    assert error == {
        "type": "error",
        "code": "invalid_request",
        "message": "text must not be empty.",
        "client_id": "c",
    }
    await socket.close()


async def test_close_4408_without_auth(
    live_server: str, services: Services, site: SiteInfo
) -> None:
    services.settings.ws_auth_timeout_s = 0.3
    socket = await open_socket(live_server)
    assert await socket.closed_with() == 4408


@pytest.mark.parametrize(
    "first", [{"type": "auth", "access_token": "nope"}, {"type": "ping"}, {"type": "auth"}]
)
async def test_close_4401_on_bad_auth(live_server: str, site: SiteInfo, first: dict) -> None:  # type: ignore[type-arg]
    socket = await open_socket(live_server)
    await socket.send(first)
    assert await socket.closed_with() == 4401


async def test_close_4401_when_token_expires(
    live_server: str, services: Services, site: SiteInfo, visitor: Visitor
) -> None:
    services.tokens.ttl_s = 2
    try:
        token = services.tokens.issue(site_id=site.id, visitor_id=visitor.id, verified=False)
    finally:
        services.tokens.ttl_s = 600
    socket = await open_socket(live_server)
    await socket.send({"type": "auth", "access_token": token})
    first = await socket.recv()
    assert first["type"] == "ready"  # accepted while valid…
    assert await socket.closed_with(timeout=5) == 4401  # …and closed when it expires


async def test_close_4403_for_origins(
    live_server: str, client, services: Services, visitor: Visitor
) -> None:  # type: ignore[no-untyped-def]
    unknown = await open_socket(live_server, origin="https://evil.example")
    assert await unknown.closed_with() == 4403
    other_site = await make_site(services, name="Other", origins=["https://other.example"])
    services.known_origins._expires = 0  # see the new site's origin now
    # an origin another site allows cannot use this visitor's token
    socket = await open_socket(live_server, origin="https://other.example")
    await socket.send({"type": "auth", "access_token": visitor.access_token})
    assert await socket.closed_with() == 4403
    assert other_site.id


async def test_close_1009_on_oversized_frame(live_server: str, visitor: Visitor) -> None:
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.connection.send("x" * (70 * 1024))
    assert await socket.closed_with() == 1009


async def test_close_4429_on_connection_limit(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    services.connection_limits.per_ip = 2
    first = await chat_socket(live_server, visitor.access_token)
    second = await chat_socket(live_server, visitor.access_token)
    third = await open_socket(live_server)
    await third.send({"type": "auth", "access_token": visitor.access_token})
    assert await third.closed_with() == 4429
    await first.close()
    await second.close()


async def test_close_4429_on_send_abuse(live_server: str, visitor: Visitor) -> None:
    conversation_id = await visitor.conversation()
    socket = await chat_socket(live_server, visitor.access_token)
    for i in range(40):
        await socket.send(
            {
                "type": "send",
                "conversation_id": conversation_id,
                "client_id": f"c{i}",
                "text": "spam",
            }
        )
    frames: list[dict] = []  # type: ignore[type-arg]
    code = None
    try:
        while True:
            frames.append(await socket.recv())
    except Exception:
        code = await socket.closed_with(timeout=1)
    limited = [f for f in frames if f.get("code") == "rate_limited"]
    assert limited and limited[0]["retry_after"] >= 1
    assert sum(1 for f in frames if f["type"] == "ack") == 20
    assert code == 4429


async def test_typing_is_relayed_to_the_other_tabs(live_server: str, visitor: Visitor) -> None:
    conversation_id = await visitor.conversation()
    tab_a = await chat_socket(live_server, visitor.access_token)
    tab_b = await chat_socket(live_server, visitor.access_token)
    for tab in (tab_a, tab_b):
        await tab.send({"type": "join", "conversation_id": conversation_id, "after_seq": 0})
        await tab.recv()
    await tab_a.send({"type": "typing", "conversation_id": conversation_id})
    typing = await tab_b.recv_until(lambda f: f["type"] == "typing")
    assert typing[-1] == {"type": "typing", "conversation_id": conversation_id, "role": "visitor"}
    await asyncio.gather(tab_a.close(), tab_b.close())


async def test_missing_origin_needs_native_clients(
    live_server: str, client, services: Services, visitor: Visitor
) -> None:  # type: ignore[no-untyped-def]
    socket = await open_socket(live_server, origin=None)
    await socket.send({"type": "auth", "access_token": visitor.access_token})
    assert await socket.closed_with() == 4403
    native = await make_site(services, name="App", options={"allow_native_clients": True})
    app_visitor = await start_visitor(client, native.id)
    allowed = await open_socket(live_server, origin=None)
    await allowed.send({"type": "auth", "access_token": app_visitor.access_token})
    assert (await allowed.recv())["type"] == "ready"
    await allowed.close()


async def test_live_messages_still_arrive_after_a_quiet_spell(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    """A quiet conversation (past the feed's periodic check) keeps delivering live messages."""
    services.settings.ws_feed_check_s = 0.2
    conversation_id = await visitor.conversation()
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.send({"type": "join", "conversation_id": conversation_id, "after_seq": 0})
    await socket.recv()
    await asyncio.sleep(1.0)  # several checks pass in silence
    async with services.db.session_scope() as session:
        await do_create_message(
            session, conversation_id=conversation_id, role="system", text="late"
        )
    frames = await socket.recv_until(lambda f: f["type"] == "message", timeout=3)
    assert frames[-1]["message"]["text"] == "late"
    await socket.close()

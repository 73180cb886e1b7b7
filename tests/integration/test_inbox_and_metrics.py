"""The operator inbox: takeover, live operator reply, hand back, close with transcript; the
conversation list's pages (ties on created_at, filters, one query per page) and the detail's pages
of messages. The metrics API's figures are checked in test_metrics_exact.py."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event, select

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.actions.conversations import do_start_conversation
from frontdesk.actions.messages import do_create_message
from frontdesk.ids import new_id
from frontdesk.models import Conversation, EventRecord, Visitor
from frontdesk.services import Services
from tests.conftest import SiteInfo, make_site, start_visitor
from tests.conftest import Visitor as VisitorSession
from tests.realtime.wsclient import chat_socket

API = "/api/v1"


async def key(services: Services, *scopes: str) -> dict[str, str]:
    async with services.db.session_scope() as session:
        created = await do_create_api_key(session, scopes=list(scopes))
    return {"Authorization": f"Bearer {created.key}"}


async def test_takeover_reply_handback_close(
    live_server: str,
    client: httpx.AsyncClient,
    services: Services,
    site: SiteInfo,
    visitor: VisitorSession,
) -> None:
    operator = await key(services, "write")
    conversation_id = await visitor.conversation()
    socket = await chat_socket(live_server, visitor.access_token)
    await socket.send({"type": "join", "conversation_id": conversation_id, "after_seq": 0})
    await socket.recv()

    taken = await client.post(f"{API}/conversations/{conversation_id}/takeover", headers=operator)
    assert taken.json()["handler"] == "operator"
    await visitor.send(conversation_id, "is anyone there?")
    await services.turns.drain()
    reply = await client.post(
        f"{API}/conversations/{conversation_id}/messages",
        headers=operator,
        json={"text": "Hi, Anna here.", "client_id": "op-1"},
    )
    assert reply.status_code == 201
    frames = await socket.recv_until(
        lambda f: f["type"] == "message" and f["message"]["role"] == "operator"
    )
    roles = [f["message"]["role"] for f in frames if f["type"] == "message"]
    assert roles == ["visitor", "operator"]  # the bot stayed silent while the operator had it

    await client.post(f"{API}/conversations/{conversation_id}/handback", headers=operator)
    await visitor.send(conversation_id, "thanks, one more question")
    frames = await socket.recv_until(
        lambda f: f["type"] == "message" and f["message"]["role"] == "assistant"
    )
    assert frames[-1]["message"]["seq"] == 4

    closed = await client.post(f"{API}/conversations/{conversation_id}/close", headers=operator)
    assert closed.json()["status"] == "closed"
    again = await client.post(f"{API}/conversations/{conversation_id}/close", headers=operator)
    assert again.status_code == 409
    async with services.db.read_scope() as session:
        event = (
            await session.execute(
                select(EventRecord).where(EventRecord.type == "conversation.closed")
            )
        ).scalar_one()
    assert [m["role"] for m in event.data["transcript"]] == [
        "visitor",
        "operator",
        "visitor",
        "assistant",
    ]
    detail = (await client.get(f"{API}/conversations/{conversation_id}", headers=operator)).json()
    assert [m["seq"] for m in detail["messages"]] == [1, 2, 3, 4]
    viewer = await key(services, "read")
    denied = await client.post(f"{API}/conversations/{conversation_id}/takeover", headers=viewer)
    assert denied.status_code == 403
    await socket.close()


async def test_conversation_list_pages_and_filters(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    reader = await key(services, "read")
    ids = []
    for _ in range(5):
        visitor = await start_visitor(client, site.id)
        ids.append(await visitor.conversation())
    first = (await client.get(f"{API}/conversations", headers=reader, params={"limit": 2})).json()
    second = (
        await client.get(
            f"{API}/conversations",
            headers=reader,
            params={"limit": 2, "cursor": first["next_cursor"]},
        )
    ).json()
    third = (
        await client.get(
            f"{API}/conversations",
            headers=reader,
            params={"limit": 2, "cursor": second["next_cursor"]},
        )
    ).json()
    seen = [c["id"] for page in (first, second, third) for c in page["conversations"]]
    assert sorted(seen) == sorted(ids) and third["next_cursor"] is None
    bad = await client.get(f"{API}/conversations", headers=reader, params={"cursor": "!!"})
    assert bad.status_code == 422
    closed = (
        await client.get(f"{API}/conversations", headers=reader, params={"status": "closed"})
    ).json()
    assert closed["conversations"] == []


async def _conversations_at(
    services: Services, site_ids: list[str], moments: list[datetime], rng: random.Random
) -> list[Conversation]:
    """Conversations started through the app's own action, then moved to the given moments (the
    API stamps them with the clock, which never repeats a microsecond on demand)."""
    made = []
    async with services.db.session_scope() as session:
        for moment in moments:
            site_id = rng.choice(site_ids)
            visitor = Visitor(id=new_id("vis"), site_id=site_id)
            session.add(visitor)
            await session.flush()
            conversation = await do_start_conversation(
                session, site_id=site_id, visitor_id=visitor.id
            )
            conversation.created_at = moment
            conversation.status = rng.choice(["open", "closed"])
            conversation.handler = rng.choice(["bot", "operator"])
            made.append(conversation)
    return made


async def _walk(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]
) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(200):
        page = await client.get(
            f"{API}/conversations",
            headers=headers,
            params=params | ({"cursor": cursor} if cursor else {}),
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["conversations"]) <= params["limit"]
        ids.extend(c["id"] for c in body["conversations"])
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("the pages never ended")


async def test_pages_through_equal_created_at_without_skips_or_repeats(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Many conversations share one `created_at` to the microsecond; pages of every size cut
    through those ties, with and without filters, and each conversation comes exactly once, in
    the order (created_at, id) newest first."""
    rng = random.Random(11)
    sites = [(await make_site(services, name=f"T{i}")).id for i in range(2)]
    base = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)
    moments = (
        [base] * 7
        + [base - timedelta(microseconds=1)] * 4
        + [base + timedelta(seconds=5)] * 3
        + [base - timedelta(days=1, microseconds=i) for i in range(4)]
    )
    rng.shuffle(moments)
    made = await _conversations_at(services, sites, moments, rng)
    reader = await key(services, "read")
    filters: list[dict[str, Any]] = [
        {},
        {"site_id": sites[0]},
        {"status": "open"},
        {"site_id": sites[1], "status": "closed"},
        {"handler": "operator"},
        {"status": "closed", "handler": "bot"},
    ]
    for wanted in filters:
        expected = [
            c.id
            for c in sorted(made, key=lambda c: (c.created_at, c.id), reverse=True)
            if all(getattr(c, field) == value for field, value in wanted.items())
        ]
        for limit in (1, 2, 3, 5, 200):
            got = await _walk(client, reader, wanted | {"limit": limit})
            assert got == expected, (wanted, limit)


async def test_a_cursor_must_carry_a_time_zone_and_an_id(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    reader = await key(services, "read")
    for raw in (
        "2026-11-20T09:30:15|conv_x",
        "2026-11-20T09:30:15+00:00|",
        "2026-13-01|x",
        "0001-01-01T00:00:00+14:00|conv_x",
    ):
        cursor = base64.urlsafe_b64encode(raw.encode()).decode()
        response = await client.get(
            f"{API}/conversations", headers=reader, params={"cursor": cursor}
        )
        assert response.status_code == 422, raw
        assert response.json()["error"]["code"] == "invalid_request"


async def test_detail_reads_a_long_conversation_a_page_at_a_time(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    visitor = await start_visitor(client, site.id)
    conversation_id = await visitor.conversation()
    async with services.db.session_scope() as session:
        for i in range(7):
            await do_create_message(
                session, conversation_id=conversation_id, role="visitor", text=f"line {i}"
            )
    reader = await key(services, "read")
    url = f"{API}/conversations/{conversation_id}"
    whole = (await client.get(url, headers=reader)).json()
    assert [m["seq"] for m in whole["messages"]] == list(range(1, 8))
    assert whole["has_more_messages"] is False and whole["last_seq"] == 7
    seen, after = [], 0
    while True:
        page = (
            await client.get(url, headers=reader, params={"after_seq": after, "limit": 3})
        ).json()
        seen.append([m["seq"] for m in page["messages"]])
        if not page["has_more_messages"]:
            break
        after = page["messages"][-1]["seq"]
    assert seen == [[1, 2, 3], [4, 5, 6], [7]]
    for bad in ({"limit": 0}, {"limit": 1001}, {"after_seq": -1}, {"after_seq": 2**31}):
        response = await client.get(url, headers=reader, params=bad)
        assert response.status_code == 422, bad


async def test_a_list_page_costs_the_same_queries_whatever_its_size(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    """No query per row: each conversation's last message comes in the page's own query."""
    visitor = await start_visitor(client, site.id)
    async with services.db.session_scope() as session:
        for i in range(12):
            conversation = await do_start_conversation(
                session, site_id=site.id, visitor_id=visitor.id
            )
            await session.flush()
            if i % 3:
                await do_create_message(
                    session, conversation_id=conversation.id, role="visitor", text=f"hello {i}"
                )
    reader = await key(services, "read")
    await client.get(f"{API}/conversations", headers=reader)  # the key's first use is recorded
    statements: list[str] = []

    def record(*args: Any) -> None:
        statement = str(args[2])
        # Background tasks (webhook fan-out, notifications) query other tables meanwhile.
        if "conversations" in statement or "messages" in statement:
            statements.append(statement)

    engines = {services.db.reader.sync_engine, services.db.writer.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        counts = {}
        for limit in (2, 12):
            statements.clear()
            page = await client.get(f"{API}/conversations", headers=reader, params={"limit": limit})
            assert len(page.json()["conversations"]) == limit
            assert sum(1 for c in page.json()["conversations"] if c["last_message"]) > 0
            counts[limit] = len(statements)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
    assert counts[2] == counts[12] == 1, statements

"""The operator inbox (takeover, live operator reply, hand back, close with transcript) and the
metrics API's figures against the database after a randomised workload."""

from __future__ import annotations

import random
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.models import Conversation, EventRecord, Lead, Message, Visitor, utcnow
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


async def test_metrics_equal_the_database(client: httpx.AsyncClient, services: Services) -> None:
    rng = random.Random(7)
    sites = [
        await make_site(
            services, name=f"S{i}", limits={"visitor_messages": "600/minute", "visitor_burst": 100}
        )
        for i in range(2)
    ]
    start = utcnow() - timedelta(seconds=1)
    for _ in range(rng.randint(6, 10)):
        site = rng.choice(sites)
        visitor = await start_visitor(client, site.id)
        for _ in range(rng.randint(0, 2)):
            conversation_id = await visitor.conversation()
            for i in range(rng.randint(0, 3)):
                await visitor.send(conversation_id, f"question {i}")
        if rng.random() < 0.5:
            await client.post(
                "/api/widget/v1/leads", headers=visitor.auth, json={"email": "l@shop.example"}
            )
        events = [
            {
                "type": rng.choice(
                    ["widget.opened", "quick_action.clicked", "offer.clicked", "error.reported"]
                )
            }
            for _ in range(rng.randint(0, 4))
        ]
        if events:
            await client.post(
                "/api/widget/v1/events", headers=visitor.auth, json={"events": events}
            )
    await services.turns.drain()
    reader = await key(services, "read")
    for site_id in (None, sites[0].id):
        params = {"since": start.isoformat()} | ({"site_id": site_id} if site_id else {})
        figures = (await client.get(f"{API}/metrics", headers=reader, params=params)).json()
        async with services.db.read_scope() as session:

            def where(column, stmt, site_id=site_id):  # type: ignore[no-untyped-def]
                return stmt.where(column == site_id) if site_id else stmt

            expect = {
                "conversations": await session.scalar(
                    where(Conversation.site_id, select(func.count()).select_from(Conversation))
                ),
                "messages": await session.scalar(
                    where(
                        Conversation.site_id,
                        select(func.count())
                        .select_from(Message)
                        .join(Conversation, Conversation.id == Message.conversation_id),
                    )
                ),
                "visitors": await session.scalar(
                    where(Visitor.site_id, select(func.count()).select_from(Visitor))
                ),
                "leads": await session.scalar(
                    where(Lead.site_id, select(func.count()).select_from(Lead))
                ),
            }
            for name, type_ in (
                ("errors", "error.reported"),
                ("quick_action_clicks", "quick_action.clicked"),
                ("offer_clicks", "offer.clicked"),
            ):
                expect[name] = await session.scalar(
                    where(
                        EventRecord.site_id,
                        select(func.count())
                        .select_from(EventRecord)
                        .where(EventRecord.type == type_),
                    )
                )
        for name, value in expect.items():
            assert figures[name] == value, (name, site_id)
        assert figures["answers"] == (await _answers(services, site_id))
        if figures["answers"]:
            assert 0 <= figures["latency_ms"]["p50"] <= figures["latency_ms"]["p95"]


async def _answers(services: Services, site_id: str | None) -> int:
    async with services.db.read_scope() as session:
        stmt = (
            select(func.count())
            .select_from(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.role == "assistant")
        )
        if site_id:
            stmt = stmt.where(Conversation.site_id == site_id)
        return int(await session.scalar(stmt) or 0)

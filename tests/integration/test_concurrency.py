"""Gap-free numbering and idempotency under concurrent sends, on both databases."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from frontdesk.services import Services
from tests.conftest import Visitor, make_site, start_visitor

BASE = "/api/widget/v1"


async def wait_for_answers(services: Services) -> None:
    await services.turns.drain(timeout_s=30)


@pytest.fixture
async def busy_visitor(client: httpx.AsyncClient, services: Services) -> Visitor:
    """A visitor of a site whose message limit is far above the burst sent here."""
    site = await make_site(
        services, limits={"visitor_messages": "6000/minute", "visitor_burst": 100}
    )
    return await start_visitor(client, site.id)


async def test_fifty_concurrent_sends_are_numbered_without_gaps(
    client: httpx.AsyncClient, services: Services, busy_visitor: Visitor
) -> None:
    visitor = busy_visitor
    conversation_id = await visitor.conversation()
    responses = await asyncio.gather(
        *(visitor.send(conversation_id, f"message {i}", client_id=f"c{i}") for i in range(50))
    )
    assert all(r.status_code == 202 for r in responses)
    visitor_seqs = sorted(r.json()["message"]["seq"] for r in responses)
    assert len(set(visitor_seqs)) == 50
    await wait_for_answers(services)
    history = await client.get(
        f"{BASE}/conversations/{conversation_id}/messages",
        params={"limit": 200},
        headers=visitor.auth,
    )
    messages = history.json()["messages"]
    assert [m["seq"] for m in messages] == list(range(1, 101))  # 50 questions + 50 answers
    assert sum(1 for m in messages if m["role"] == "visitor") == 50
    answered = {m["meta"]["latency_ms"] >= 0 for m in messages if m["role"] == "assistant"}
    assert answered == {True}


async def test_same_client_id_sent_concurrently_is_stored_once(
    client: httpx.AsyncClient, services: Services, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    responses = await asyncio.gather(
        *(visitor.send(conversation_id, "double click", client_id="same") for _ in range(10))
    )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["message"]["id"] for r in responses}) == 1
    await wait_for_answers(services)
    history = await client.get(
        f"{BASE}/conversations/{conversation_id}/messages", headers=visitor.auth
    )
    assert [m["role"] for m in history.json()["messages"]] == ["visitor", "assistant"]

"""The answer cache: repeated questions are answered from the cache until the knowledge changes."""

from __future__ import annotations

import httpx

from frontdesk.actions.knowledge import do_add_document
from frontdesk.knowledge.ingest import parse_document
from frontdesk.responders.cache import normalise_question
from frontdesk.services import Services
from tests.conftest import SiteInfo, make_site, start_visitor
from tests.sse import parse_sse


async def add_text(services: Services, site_id: str, text: str) -> None:
    document = parse_document(
        text, content_type="text/markdown", source="hours.md", fallback_title="Hours"
    )
    async with services.db.session_scope() as session:
        await do_add_document(session, site_id=site_id, document=document)


async def ask(client: httpx.AsyncClient, site_id: str, question: str) -> dict:  # type: ignore[type-arg]
    visitor = await start_visitor(client, site_id)
    conversation_id = await visitor.conversation()
    response = await client.post(
        f"/api/widget/v1/conversations/{conversation_id}/messages",
        headers={**visitor.auth, "Accept": "text/event-stream"},
        json={"client_id": "q", "text": question},
    )
    return [e for n, e in parse_sse(response.text) if n == "message"][-1]["message"]  # type: ignore[no-any-return]


async def test_repeated_question_hits_until_knowledge_changes(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    await add_text(services, site.id, "# Opening hours\n\nThe shop opens at nine in the morning.")
    first = await ask(client, site.id, "When does the shop open?")
    second = await ask(client, site.id, "  when does the SHOP open ")
    assert "nine" in first["text"] and first["meta"].get("cached") is None
    assert second["text"] == first["text"] and second["meta"]["cached"] is True
    assert second["citations"] == first["citations"]

    await add_text(services, site.id, "# Opening hours\n\nThe shop opens at ten in the morning.")
    third = await ask(client, site.id, "When does the shop open?")
    assert "ten" in third["text"] and third["meta"].get("cached") is None
    cache = services.turns.cache
    assert cache.hits == 1 and cache.misses == 2


async def test_unanswered_questions_are_not_cached(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    for _ in range(2):
        answer = await ask(client, site.id, "What is the meaning of life?")
        assert answer["meta"]["answered"] is False and "cached" not in answer["meta"]


async def test_site_can_turn_the_cache_off(client: httpx.AsyncClient, services: Services) -> None:
    site = await make_site(services, options={"answer_cache": False})
    await add_text(services, site.id, "# Opening hours\n\nThe shop opens at nine in the morning.")
    await ask(client, site.id, "When does the shop open?")
    again = await ask(client, site.id, "When does the shop open?")
    assert "cached" not in again["meta"]


def test_normalise_question() -> None:
    assert normalise_question("  Когда ОТКРЫТО?! ") == "когда открыто"
    assert normalise_question("What's up?") == normalise_question("what s up")

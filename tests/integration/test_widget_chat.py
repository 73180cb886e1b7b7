"""The widget API end to end: sessions, conversations, messages, the SSE answer, history."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from frontdesk.actions.knowledge import do_add_document
from frontdesk.knowledge.ingest import read_document
from frontdesk.services import Services
from tests.conftest import SiteInfo, Visitor, start_visitor
from tests.sse import parse_sse


async def add_docs(services: Services, site_id: str, docs_dir) -> None:  # type: ignore[no-untyped-def]
    for path in sorted(docs_dir.glob("*.md")):
        async with services.db.session_scope() as session:
            await do_add_document(session, site_id=site_id, document=read_document(path))


async def stream_answer(
    visitor: Visitor, conversation_id: str, text: str, client_id: str | None = None
):  # type: ignore[no-untyped-def]
    response = await visitor.client.post(
        f"/api/widget/v1/conversations/{conversation_id}/messages",
        headers={**visitor.auth, "Accept": "text/event-stream"},
        json={"client_id": client_id or str(uuid.uuid4()), "text": text},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_sse(response.text)


async def test_session_issues_tokens(client: httpx.AsyncClient, site: SiteInfo) -> None:
    response = await client.post("/api/widget/v1/sessions", json={"site_id": site.id})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"visitor_id", "access_token", "expires_in", "refresh_token", "verified"}
    assert body["visitor_id"].startswith("vis_")
    assert 0 < body["expires_in"] <= 900
    assert body["verified"] is False


async def test_answer_streams_with_citations(
    client: httpx.AsyncClient, services: Services, site: SiteInfo, visitor: Visitor, docs_dir
) -> None:  # type: ignore[no-untyped-def]
    await add_docs(services, site.id, docs_dir)
    conversation_id = await visitor.conversation()
    events = await stream_answer(visitor, conversation_id, "How long does express delivery take?")
    names = [name for name, _ in events]
    assert names[0] == "message" and names[-1] == "message_end"
    assert "delta" in names
    visitor_message = events[0][1]["message"]
    assert visitor_message["role"] == "visitor" and visitor_message["seq"] == 1
    answer = [e for n, e in events if n == "message"][-1]["message"]
    assert answer["role"] == "assistant" and answer["seq"] == 2
    assert "next business day" in answer["text"]
    assert answer["citations"][0]["title"] == "Shipping › Delivery times"
    deltas = "".join(e["text"] for n, e in events if n == "delta")
    assert deltas.strip() == answer["text"]
    assert all(e["message_id"] == answer["id"] for n, e in events if n == "delta")


async def test_unknown_question_gets_honest_reply(
    services: Services, site: SiteInfo, visitor: Visitor, docs_dir
) -> None:  # type: ignore[no-untyped-def]
    await add_docs(services, site.id, docs_dir)
    conversation_id = await visitor.conversation()
    events = await stream_answer(visitor, conversation_id, "What is the weather on Mars?")
    answer = [e for n, e in events if n == "message"][-1]["message"]
    assert "couldn't find" in answer["text"]
    assert "citations" not in answer
    assert answer["meta"]["answered"] is False


async def test_plain_post_returns_202_and_answer_arrives_in_history(
    client: httpx.AsyncClient, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    response = await visitor.send(conversation_id, "hello there", client_id="first")
    assert response.status_code == 202
    message = response.json()["message"]
    assert message["seq"] == 1 and message["client_id"] == "first"
    for _ in range(100):
        history = await client.get(
            f"/api/widget/v1/conversations/{conversation_id}/messages", headers=visitor.auth
        )
        if len(history.json()["messages"]) == 2:
            break
        await asyncio.sleep(0.02)
    messages = history.json()["messages"]
    assert [m["seq"] for m in messages] == [1, 2]
    assert messages[1]["role"] == "assistant"


async def test_same_client_id_stores_one_message(
    client: httpx.AsyncClient, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    first = await visitor.send(conversation_id, "once", client_id="dup-1")
    second = await visitor.send(conversation_id, "once again?", client_id="dup-1")
    assert first.status_code == second.status_code == 202
    assert first.json()["message"]["id"] == second.json()["message"]["id"]
    assert second.json()["message"]["text"] == "once"
    await asyncio.sleep(0.2)
    history = await client.get(
        f"/api/widget/v1/conversations/{conversation_id}/messages", headers=visitor.auth
    )
    visitor_messages = [m for m in history.json()["messages"] if m["role"] == "visitor"]
    assert len(visitor_messages) == 1
    assert len(history.json()["messages"]) == 2  # one answer, not two


async def test_repeated_send_with_stream_replays_answer(
    services: Services, site: SiteInfo, visitor: Visitor, docs_dir
) -> None:  # type: ignore[no-untyped-def]
    await add_docs(services, site.id, docs_dir)
    conversation_id = await visitor.conversation()
    first = await stream_answer(visitor, conversation_id, "How do I reset my password?", "again")
    second = await stream_answer(visitor, conversation_id, "How do I reset my password?", "again")
    answer_1 = [e for n, e in first if n == "message"][-1]["message"]
    answer_2 = [e for n, e in second if n == "message"][-1]["message"]
    assert answer_1["id"] == answer_2["id"]
    assert second[-1][0] == "message_end"


async def test_history_after_seq_and_paging(client: httpx.AsyncClient, visitor: Visitor) -> None:
    conversation_id = await visitor.conversation()
    for i in range(3):
        await visitor.send(conversation_id, f"message {i}")
    await asyncio.sleep(0.3)
    url = f"/api/widget/v1/conversations/{conversation_id}/messages"
    page = (await client.get(url, params={"after_seq": 2, "limit": 2}, headers=visitor.auth)).json()
    assert [m["seq"] for m in page["messages"]] == [3, 4]
    assert page["has_more"] is True
    rest = (await client.get(url, params={"after_seq": 4}, headers=visitor.auth)).json()
    assert [m["seq"] for m in rest["messages"]] == [5, 6]
    assert rest["has_more"] is False


async def test_visitor_lists_only_own_conversations(
    client: httpx.AsyncClient, site: SiteInfo, visitor: Visitor
) -> None:
    mine = await visitor.conversation()
    other = await start_visitor(client, site.id)
    await other.conversation()
    listed = (await client.get("/api/widget/v1/conversations", headers=visitor.auth)).json()
    assert [c["id"] for c in listed["conversations"]] == [mine]


async def test_anonymous_visitor_continues_by_id(
    client: httpx.AsyncClient, site: SiteInfo, visitor: Visitor
) -> None:
    again = await start_visitor(client, site.id, visitor_id=visitor.id)
    assert again.id == visitor.id


async def test_widget_events_recorded(client: httpx.AsyncClient, visitor: Visitor) -> None:
    response = await client.post(
        "/api/widget/v1/events",
        headers=visitor.auth,
        json={"events": [{"type": "widget.opened", "at": 1, "data": {}}, {"type": "custom.thing"}]},
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 2}


async def test_security_headers_present(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"


async def test_ready_reports_checks(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["migrations"]["ok"] is True


async def test_same_origin_get_without_origin_header(
    client: httpx.AsyncClient, visitor: Visitor
) -> None:
    """Browsers send no Origin on same-origin GETs (the chat frame's history load)."""
    conversation_id = await visitor.conversation()
    url = f"/api/widget/v1/conversations/{conversation_id}/messages"
    del client.headers["Origin"]
    frame_like = await client.get(url, headers={**visitor.auth, "Sec-Fetch-Site": "same-origin"})
    assert frame_like.status_code == 200
    cross = await client.get(url, headers={**visitor.auth, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403

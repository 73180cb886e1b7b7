"""The demo site answers questions about FrontDesk from FrontDesk's own documentation."""

from __future__ import annotations

import httpx

from frontdesk.demo_site import DEMO_SITE_ID, demo_documents, ensure_demo_site
from frontdesk.services import Services
from tests.conftest import PUBLIC_URL, start_visitor
from tests.sse import parse_sse


async def test_demo_site_answers_from_the_docs(
    client: httpx.AsyncClient, services: Services
) -> None:
    assert any(source == "README.md" for _, source in demo_documents())
    await ensure_demo_site(services)
    await ensure_demo_site(services)  # idempotent
    client.headers["Origin"] = PUBLIC_URL
    visitor = await start_visitor(client, DEMO_SITE_ID)
    conversation_id = await visitor.conversation()
    response = await client.post(
        f"/api/widget/v1/conversations/{conversation_id}/messages",
        headers={**visitor.auth, "Accept": "text/event-stream"},
        json={"client_id": "q1", "text": "How do I verify visitor identity?"},
    )
    answer = [e for n, e in parse_sse(response.text) if n == "message"][-1]["message"]
    assert answer["meta"]["answered"] is True, answer
    assert answer["citations"]


async def test_pages(client: httpx.AsyncClient) -> None:
    page = await client.get("/demo")
    assert page.status_code == 200 and "FrontDesk demo" in page.text
    script = await client.get("/demo/demo.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert (await client.get("/demo/../config.py")).status_code == 404
    assert (await client.get("/demo/nothing.js")).json()["error"]["code"] == "not_found"
    assert (await client.get("/dashboard")).status_code == 200
    assert (await client.get("/")).status_code == 200

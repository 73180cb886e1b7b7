"""Response compression: large JSON is compressed for clients that accept it; small bodies and
event streams are not, and an SSE answer still arrives token by token through the middleware."""

from __future__ import annotations

import gzip
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator

import brotli
import httpx
import pytest

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.services import Services
from tests.conftest import ORIGIN, make_site, start_visitor
from tests.fakes import FakeServer, OpenAIFake


async def admin(services: Services) -> dict[str, str]:
    async with services.db.session_scope() as session:
        created = await do_create_api_key(session, scopes=["admin"])
    return {"Authorization": f"Bearer {created.key}"}


async def test_a_large_list_is_compressed(
    live_server: str, services: Services, client: httpx.AsyncClient
) -> None:
    for i in range(12):
        await make_site(services, name=f"Shop number {i}")
    headers = await admin(services)
    url = f"http://{live_server}/api/v1/sites"
    async with httpx.AsyncClient(timeout=10) as http:
        plain = await http.get(url, headers={**headers, "Accept-Encoding": "identity"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
        size = len(plain.content)
        assert size > 1024

        # Read the raw bytes off the wire, so that nothing decodes them for us.
        for encoding, decode in (("gzip", gzip.decompress), ("br", brotli.decompress)):
            request = http.build_request(
                "GET", url, headers={**headers, "Accept-Encoding": encoding}
            )
            response = await http.send(request, stream=True)
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
            assert response.headers["content-encoding"] == encoding
            assert "accept-encoding" in response.headers["vary"].lower()
            assert int(response.headers["content-length"]) == len(raw) < size / 2
            assert json.loads(decode(raw)) == plain.json()

    # The ASGI client of the other tests decodes transparently: nothing else changes for them.
    listed = await client.get("/api/v1/sites", headers={**headers, "Accept-Encoding": "gzip"})
    assert listed.headers["content-encoding"] == "gzip" and len(listed.json()["sites"]) == 12


async def test_small_bodies_stay_plain(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Accept-Encoding": "gzip, br"})
    assert response.status_code == 200 and "content-encoding" not in response.headers


@pytest.fixture
async def slow_upstream() -> AsyncIterator[str]:
    # 16 words at 20 per second: the answer takes about 0.75 s to stream.
    fake = OpenAIFake(api_key="sk-test", model="gpt-4o-mini", token_rate=20.0, answer_tokens=16)
    async with FakeServer(fake) as base_url:
        yield base_url


async def test_an_sse_answer_streams_token_by_token(
    live_server: str, services: Services, client: httpx.AsyncClient, slow_upstream: str
) -> None:
    responder = {
        "kind": "openai",
        "base_url": f"{slow_upstream}/v1",
        "api_key": "sk-test",
        "model": "gpt-4o-mini",
    }
    site = await make_site(services, responder=responder, options={"answer_cache": False})
    visitor = await start_visitor(client, site.id)
    conversation_id = await visitor.conversation()
    url = f"http://{live_server}/api/widget/v1/conversations/{conversation_id}/messages"
    headers = {
        **visitor.auth,
        "Origin": ORIGIN,
        "Accept": "text/event-stream",
        "Accept-Encoding": "gzip, br, zstd",
    }
    body = {"client_id": str(uuid.uuid4()), "text": "where is my order"}
    arrivals: list[float] = []
    texts: list[str] = []
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", url, headers=headers, json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in response.headers
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "delta":
                arrivals.append(time.monotonic())
                texts.append(json.loads(line[6:])["text"])
            elif line.startswith("data: ") and event == "message_end":
                break
    assert "".join(texts).startswith("Echo: where is my order")
    # Each token came on its own, as it was produced: not held back and sent in one piece.
    assert len(arrivals) >= 10
    assert arrivals[-1] - arrivals[0] > 0.4
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert sum(gap > 0.02 for gap in gaps) >= len(gaps) // 2

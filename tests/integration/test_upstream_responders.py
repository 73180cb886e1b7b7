"""OpenAI-compatible and Dify responders against faithful fakes of their protocols, over real
HTTP on loopback: streaming, usage, conversation mapping, stop, retries, breaker, fallbacks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from frontdesk.models import EventRecord
from frontdesk.services import Services
from tests.conftest import Visitor, make_site, start_visitor
from tests.fakes import DifyFake, FakeServer, OpenAIFake
from tests.sse import parse_sse

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
async def openai_upstream() -> AsyncIterator[tuple[OpenAIFake, str]]:
    fake = OpenAIFake(api_key="sk-test", model=MODEL)
    async with FakeServer(fake) as base_url:
        yield fake, base_url


@pytest.fixture(scope="module")
async def dify_upstream() -> AsyncIterator[tuple[DifyFake, str]]:
    fake = DifyFake(api_key="app-test")
    async with FakeServer(fake) as base_url:
        yield fake, base_url


@pytest.fixture
def openai_fake(openai_upstream: tuple[OpenAIFake, str]) -> OpenAIFake:
    openai_upstream[0].reset()
    return openai_upstream[0]


@pytest.fixture
def dify_fake(dify_upstream: tuple[DifyFake, str]) -> DifyFake:
    dify_upstream[0].reset()
    return dify_upstream[0]


def openai_config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "openai",
        "base_url": f"{base_url}/v1",
        "api_key": "sk-test",
        "model": MODEL,
        **extra,
    }


def dify_config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "dify", "base_url": base_url, "api_key": "app-test", **extra}


async def visitor_for(
    client: httpx.AsyncClient, services: Services, responder: dict[str, Any]
) -> tuple[Visitor, str]:
    site = await make_site(services, responder=responder, options={"answer_cache": False})
    visitor = await start_visitor(client, site.id)
    return visitor, await visitor.conversation()


async def ask(
    visitor: Visitor, conversation_id: str, text: str
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    response = await visitor.client.post(
        f"/api/widget/v1/conversations/{conversation_id}/messages",
        headers={**visitor.auth, "Accept": "text/event-stream"},
        json={"client_id": str(uuid.uuid4()), "text": text},
    )
    events = parse_sse(response.text)
    answer = [e for n, e in events if n == "message"][-1]["message"]
    return events, answer


async def event_types(services: Services) -> list[str]:
    async with services.db.read_scope() as session:
        return list(
            (await session.execute(select(EventRecord.type).order_by(EventRecord.offset))).scalars()
        )


async def test_openai_streams_with_usage_and_system_prompt(
    client: httpx.AsyncClient,
    services: Services,
    openai_upstream: tuple[OpenAIFake, str],
    openai_fake: OpenAIFake,
) -> None:
    config = openai_config(openai_upstream[1], system_prompt="You are the Shop's desk.")
    visitor, conversation_id = await visitor_for(client, services, config)
    events, answer = await ask(visitor, conversation_id, "where is my order")
    deltas = "".join(e["text"] for n, e in events if n == "delta")
    assert answer["text"].startswith("Echo: where is my order") and deltas == answer["text"]
    assert answer["meta"]["usage"]["completion_tokens"] > 0
    assert answer["meta"]["responder"] == "openai" and answer["meta"]["model"] == MODEL
    body = openai_fake.requests[-1].json
    assert body["stream"] is True and body["messages"][0] == {
        "role": "system",
        "content": "You are the Shop's desk.",
    }

    _, second = await ask(visitor, conversation_id, "and the invoice")
    messages = openai_fake.requests[-1].json["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]  # history kept
    assert second["text"].startswith("Echo: and the invoice")


async def test_openai_retries_a_short_429_before_the_first_token(
    client: httpx.AsyncClient,
    services: Services,
    openai_upstream: tuple[OpenAIFake, str],
    openai_fake: OpenAIFake,
) -> None:
    openai_fake.retry_after = 0.05
    openai_fake.enqueue("rate_limit", "error")
    visitor, conversation_id = await visitor_for(
        client, services, openai_config(openai_upstream[1])
    )
    _, answer = await ask(visitor, conversation_id, "hello")
    assert answer["text"].startswith("Echo: hello")
    assert len(openai_fake.requests) == 3


async def test_drop_mid_stream_marks_the_partial_answer_and_falls_back(
    client: httpx.AsyncClient,
    services: Services,
    openai_upstream: tuple[OpenAIFake, str],
    openai_fake: OpenAIFake,
) -> None:
    openai_fake.enqueue({"mode": "drop", "after_tokens": 3})
    config = openai_config(
        openai_upstream[1], fallback={"kind": "knowledge", "no_answer": "Ask a person."}
    )
    visitor, conversation_id = await visitor_for(client, services, config)
    events, answer = await ask(visitor, conversation_id, "tell me")
    assert len(openai_fake.requests) == 1  # no retry once text was shown
    partial = "".join(e["text"] for n, e in events if n == "delta")
    assert answer["text"] == partial
    assert answer["text"].startswith("Echo: tell me") and answer["text"].endswith("Ask a person.")
    assert answer["text"].count("Echo:") == 1
    assert answer["meta"]["interrupted"][0]["responder"].startswith("openai")
    assert "responder.failed" in await event_types(services)


async def test_breaker_opens_probes_and_fallback_is_fast(
    client: httpx.AsyncClient,
    services: Services,
    openai_upstream: tuple[OpenAIFake, str],
    openai_fake: OpenAIFake,
) -> None:
    services.settings.responder_failure_threshold = 2
    services.settings.responder_open_s = 0.5
    openai_fake.mode = "error"
    config = openai_config(
        openai_upstream[1], retries=0, fallback={"kind": "knowledge", "no_answer": "Fallback."}
    )
    visitor, conversation_id = await visitor_for(client, services, config)
    for i in range(2):
        _, answer = await ask(visitor, conversation_id, f"q{i}")
        assert (
            answer["text"] == "Fallback." and answer["meta"]["failed"][0]["kind"] == "server_error"
        )
    assert (await event_types(services)).count("responder.circuit_opened") == 1
    calls = len(openai_fake.requests)
    started = time.monotonic()
    _, answer = await ask(visitor, conversation_id, "while open")
    assert answer["text"] == "Fallback." and time.monotonic() - started < 1.0
    assert len(openai_fake.requests) == calls  # not even tried
    await asyncio.sleep(0.6)
    openai_fake.mode = "ok"
    _, answer = await ask(visitor, conversation_id, "probe")
    assert answer["text"].startswith("Echo: probe")  # the half-open probe succeeded


async def test_first_token_timeout_then_graceful_reply(
    client: httpx.AsyncClient,
    services: Services,
    openai_upstream: tuple[OpenAIFake, str],
    openai_fake: OpenAIFake,
) -> None:
    openai_fake.mode = "hang"
    openai_fake.hang_seconds = 5
    config = openai_config(openai_upstream[1], retries=0, timeouts={"first_token_s": 0.3})
    visitor, conversation_id = await visitor_for(client, services, config)
    started = time.monotonic()
    events, answer = await ask(visitor, conversation_id, "anyone?")
    assert time.monotonic() - started < 1.5
    assert answer["meta"]["lead_offer"] is True
    assert (
        "error",
        {
            "type": "error",
            "code": "upstream_unavailable",
            "message": "The assistant could not answer; a fallback reply follows.",
            "conversation_id": conversation_id,
        },
    ) in events


async def test_dify_maps_conversations_and_cites_sources(
    client: httpx.AsyncClient,
    services: Services,
    dify_upstream: tuple[DifyFake, str],
    dify_fake: DifyFake,
) -> None:
    dify_fake.workflow_events = True
    dify_fake.retriever_resources = [
        {
            "position": 1,
            "dataset_id": "d",
            "dataset_name": "Help",
            "document_id": "doc",
            "document_name": "Returns.md",
            "segment_id": "s",
            "score": 0.9,
            "content": "Returns within 30 days.",
        }
    ]
    visitor, conversation_id = await visitor_for(client, services, dify_config(dify_upstream[1]))
    _, first = await ask(visitor, conversation_id, "can I return it")
    assert first["text"].startswith("Echo: can I return it")
    assert first["citations"] == [{"title": "Returns.md", "snippet": "Returns within 30 days."}]
    assert "_upstream" not in first.get("meta", {})  # the upstream id never reaches the browser
    request = dify_fake.requests[-1].json
    assert (
        request["user"] == visitor.id
        and request["conversation_id"] == ""
        and request["response_mode"] == "streaming"
    )

    await ask(visitor, conversation_id, "and the refund")
    second_request = dify_fake.requests[-1].json
    assert second_request["conversation_id"] != ""
    assert second_request["conversation_id"] in dify_fake.conversations


async def test_dify_stop_is_called_when_the_answer_is_abandoned(
    client: httpx.AsyncClient,
    services: Services,
    dify_upstream: tuple[DifyFake, str],
    dify_fake: DifyFake,
) -> None:
    dify_fake.mode = "stall"
    dify_fake.after_tokens = 2
    dify_fake.hang_seconds = 5
    config = dify_config(
        dify_upstream[1],
        timeouts={"total_s": 0.5},
        fallback={"kind": "knowledge", "no_answer": "Later."},
    )
    visitor, conversation_id = await visitor_for(client, services, config)
    _, answer = await ask(visitor, conversation_id, "slow one")
    assert answer["text"].endswith("Later.")
    for _ in range(100):
        if dify_fake.stopped:
            break
        await asyncio.sleep(0.02)
    assert len(dify_fake.stopped) == 1


@pytest.mark.parametrize("mode", ["error", "malformed", "stream_error"])
async def test_dify_failures_fall_back(
    client: httpx.AsyncClient,
    services: Services,
    dify_upstream: tuple[DifyFake, str],
    dify_fake: DifyFake,
    mode: str,
) -> None:
    dify_fake.mode = mode
    config = dify_config(
        dify_upstream[1], retries=1, fallback={"kind": "knowledge", "no_answer": "Fallback."}
    )
    visitor, conversation_id = await visitor_for(client, services, config)
    _, answer = await ask(visitor, conversation_id, "hi")
    assert answer["text"].endswith("Fallback.")
    assert answer["meta"]["failed"][0]["responder"].startswith("dify")

"""The upstream fakes driven by real clients: the official openai SDK; httpx streaming for Dify."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from tests.fakes import DifyFake, FakeServer, OpenAIFake, RecordedRequest, ThreadedFakeServer

MODEL = "gpt-4o-mini"
DIFY_AUTH = {"Authorization": "Bearer app-test"}
# The drop surfaces as the transport's error (openai 2.x) or wrapped (openai 3.x, httpx2).
CONNECTION_ERRORS = (openai.APIConnectionError, httpx.TransportError)


async def eventually(check: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# --- OpenAI -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def openai_server() -> AsyncIterator[tuple[OpenAIFake, str]]:
    fake = OpenAIFake(api_key="sk-test", model=MODEL)
    async with FakeServer(fake) as base_url:
        yield fake, base_url


@pytest.fixture
async def oai(
    openai_server: tuple[OpenAIFake, str],
) -> AsyncIterator[tuple[OpenAIFake, AsyncOpenAI]]:
    fake, base_url = openai_server
    fake.reset()
    async with AsyncOpenAI(base_url=f"{base_url}/v1", api_key="sk-test", max_retries=0) as client:
        yield fake, client


def chat(text: str = "where is my order") -> list[Any]:
    return [
        {"role": "system", "content": "You are the front desk of shop.example."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": text},
    ]


async def test_openai_stream_with_usage(oai: tuple[OpenAIFake, AsyncOpenAI]) -> None:
    fake, client = oai
    stream = await client.chat.completions.create(
        model=MODEL, messages=chat(), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: where is my order alpha bravo charlie delta echo foxtrot golf"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].object == "chat.completion.chunk"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 12
    (rec,) = fake.requests
    assert rec.json["messages"][0] == chat()[0] and len(rec.json["messages"]) == 4
    assert rec.json["model"] == MODEL and "authorization" not in rec.headers
    assert (rec.status, rec.outcome, rec.tokens_sent, rec.authorized) == (
        200,
        "completed",
        12,
        True,
    )


async def test_openai_blocking_and_max_tokens(oai: tuple[OpenAIFake, AsyncOpenAI]) -> None:
    fake, client = oai
    fake.answer_tokens = 4
    reply = await client.chat.completions.create(model=MODEL, messages=chat("hello"))
    assert reply.choices[0].message.content == "Echo: hello alpha bravo"
    assert reply.choices[0].finish_reason == "stop" and reply.usage is not None
    assert reply.usage.completion_tokens == 4
    cut = await client.chat.completions.create(model=MODEL, messages=chat("a b c d"), max_tokens=3)
    assert (
        cut.choices[0].message.content == "Echo: a b" and cut.choices[0].finish_reason == "length"
    )
    assert [m.id for m in (await client.models.list()).data] == [MODEL]


async def test_openai_errors(oai: tuple[OpenAIFake, AsyncOpenAI]) -> None:
    fake, client = oai
    with pytest.raises(openai.AuthenticationError) as auth:
        await client.with_options(api_key="sk-wrong").chat.completions.create(
            model=MODEL, messages=chat()
        )
    assert auth.value.code == "invalid_api_key" and auth.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="gpt-nope", messages=chat())
    assert missing.value.code == "model_not_found"

    fake.enqueue({"mode": "rate_limit", "retry_after": 7}, "error")
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model=MODEL, messages=chat())
    assert limited.value.code == "rate_limit_exceeded" and limited.value.type == "requests"
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError) as failed:
        await client.chat.completions.create(model=MODEL, messages=chat(), stream=True)
    assert failed.value.type == "server_error"
    reply = await client.chat.completions.create(model=MODEL, messages=chat())
    assert reply.choices[0].message.content
    assert [r.status for r in fake.requests] == [401, 404, 429, 500, 200]
    assert [r.authorized for r in fake.requests] == [False, True, True, True, True]


async def test_openai_script_is_consumed_by_sdk_retries(
    oai: tuple[OpenAIFake, AsyncOpenAI],
) -> None:
    fake, client = oai
    fake.retry_after = 0.01  # the SDK honours Retry-After, so this retries fast
    fake.enqueue("rate_limit", "rate_limit")
    reply = await client.with_options(max_retries=2).chat.completions.create(
        model=MODEL, messages=chat()
    )
    assert reply.choices[0].finish_reason == "stop" and not fake.queue
    assert [r.status for r in fake.requests] == [429, 429, 200]
    assert [r.headers["x-stainless-retry-count"] for r in fake.requests] == ["0", "1", "2"]
    with pytest.raises(TypeError):
        fake.enqueue({"latncy": 1})


async def test_openai_pacing(oai: tuple[OpenAIFake, AsyncOpenAI]) -> None:
    fake, client = oai
    fake.latency, fake.first_token_latency, fake.token_rate, fake.answer_tokens = 0.05, 0.1, 50, 6
    start = time.monotonic()
    stream = await client.chat.completions.create(model=MODEL, messages=chat(), stream=True)
    headers_at = time.monotonic() - start
    arrivals = [
        time.monotonic() - start async for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert headers_at >= 0.05
    assert arrivals[0] >= 0.15 - 0.01
    assert arrivals[-1] >= 0.15 + 5 / 50 - 0.01 and len(arrivals) == 6


async def test_openai_drop_malformed_and_stream_error(oai: tuple[OpenAIFake, AsyncOpenAI]) -> None:
    fake, client = oai
    fake.enqueue({"mode": "drop", "after_tokens": 3}, "malformed", "stream_error")

    got: list[str] = []
    with pytest.raises(CONNECTION_ERRORS):
        async for c in await client.chat.completions.create(
            model=MODEL, messages=chat(), stream=True
        ):
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == "Echo: where is"
    assert (fake.requests[0].outcome, fake.requests[0].tokens_sent) == ("dropped", 3)

    with pytest.raises(ValueError):  # the SDK cannot parse `data: {not json`
        async for _ in await client.chat.completions.create(
            model=MODEL, messages=chat(), stream=True
        ):
            pass

    with pytest.raises(openai.APIError, match="server had an error"):
        async for _ in await client.chat.completions.create(
            model=MODEL, messages=chat(), stream=True
        ):
            pass
    assert fake.requests[2].tokens_sent == 2


async def test_openai_malformed_line_then_carries_on(openai_server: tuple[OpenAIFake, str]) -> None:
    fake, base_url = openai_server
    fake.reset()
    fake.enqueue({"mode": "malformed", "after_tokens": 1})
    body = {"model": MODEL, "messages": chat(), "stream": True}
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{base_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": "Bearer sk-test"},
        )
    blocks = r.text.split("\n\n")
    assert r.headers["content-type"].startswith("text/event-stream")
    assert blocks[2] == "data: {not json" and blocks[-2] == "data: [DONE]"
    assert json.loads(blocks[1][6:])["choices"][0]["delta"]["content"] == "Echo:"


async def test_openai_hang_and_stall_end_when_the_client_leaves(
    oai: tuple[OpenAIFake, AsyncOpenAI],
) -> None:
    fake, client = oai
    fake.mode = "hang"
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.2).chat.completions.create(model=MODEL, messages=chat())
    await eventually(lambda: fake.requests[0].outcome == "disconnected")
    assert fake.requests[0].status is None

    fake.mode = "stall"
    stream = await client.with_options(timeout=0.2).chat.completions.create(
        model=MODEL, messages=chat(), stream=True
    )
    with pytest.raises((openai.APITimeoutError, httpx.TimeoutException)):
        async for _ in stream:
            pass
    await eventually(lambda: fake.requests[1].outcome == "disconnected")
    assert fake.requests[1].tokens_sent == 2 and fake.in_flight == 0


async def test_shutdown_releases_hanging_requests() -> None:
    fake = OpenAIFake(mode="hang")
    body = {"model": MODEL, "messages": chat()}
    async with httpx.AsyncClient() as http:
        async with FakeServer(fake) as base_url:
            request = asyncio.create_task(
                http.post(
                    f"{base_url}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": "Bearer sk-test"},
                )
            )
            await eventually(lambda: fake.in_flight == 1)
            start = time.monotonic()
        assert time.monotonic() - start < 1.5
        with pytest.raises(httpx.TransportError):
            await request
    assert fake.requests[0].outcome == "shutdown"


def test_threaded_server_for_sync_callers() -> None:
    fake = OpenAIFake(answer_tokens=3)
    with (
        ThreadedFakeServer(fake) as base_url,
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-test") as client,
    ):
        reply = client.chat.completions.create(model=MODEL, messages=chat("ping"))
        assert reply.choices[0].message.content == "Echo: ping alpha"
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model=MODEL, messages=chat("ping"), stream=True)
            if c.choices
        )
        assert text == "Echo: ping alpha"
    assert [r.outcome for r in fake.requests] == ["completed", "completed"]


# --- Dify -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def dify_server() -> AsyncIterator[tuple[DifyFake, str]]:
    fake = DifyFake(api_key="app-test")
    async with FakeServer(fake) as base_url:
        yield fake, base_url


@pytest.fixture
async def dify(
    dify_server: tuple[DifyFake, str],
) -> AsyncIterator[tuple[DifyFake, httpx.AsyncClient]]:
    fake, base_url = dify_server
    fake.reset()
    async with httpx.AsyncClient(base_url=base_url, headers=DIFY_AUTH, timeout=5) as client:
        yield fake, client


def ask(query: str = "do you ship abroad", **extra: Any) -> dict[str, Any]:
    return {
        "inputs": {},
        "query": query,
        "response_mode": "streaming",
        "user": "visitor-1",
        **extra,
    }


async def stream_events(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """POST and read the SSE stream; a bare `event: ping` becomes {"event": "ping"}."""
    events: list[dict[str, Any]] = []
    async with client.stream("POST", "/v1/chat-messages", json=body) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line == "event: ping":
                events.append({"event": "ping"})
            elif line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if on_event is not None:
                    await on_event(events[-1])
    return events


def answer_of(events: list[dict[str, Any]], kind: str = "message") -> str:
    return "".join(e["answer"] for e in events if e["event"] == kind)


async def test_dify_streaming_conversation(dify: tuple[DifyFake, httpx.AsyncClient]) -> None:
    fake, client = dify
    events = await stream_events(client, ask())
    assert [e["event"] for e in events] == ["message"] * 12 + ["message_end"]
    assert (
        answer_of(events) == "Echo: do you ship abroad alpha bravo charlie delta echo foxtrot golf"
    )
    end = events[-1]
    conversation_id = end["conversation_id"]
    uuid.UUID(conversation_id)
    assert {(e["conversation_id"], e["task_id"], e["message_id"]) for e in events} == {
        (conversation_id, end["task_id"], end["message_id"])
    }
    usage = end["metadata"]["usage"]
    assert usage["completion_tokens"] == 12 and usage["total_tokens"] == usage["prompt_tokens"] + 12
    resource = end["metadata"]["retriever_resources"][0]
    assert {"position", "dataset_id", "document_name", "segment_id", "score", "content"} <= set(
        resource
    )

    follow_up = await stream_events(client, ask("and to Norway", conversation_id=conversation_id))
    assert follow_up[-1]["conversation_id"] == conversation_id
    assert follow_up[-1]["metadata"]["usage"]["prompt_tokens"] > usage["prompt_tokens"]
    assert [q for q, _ in fake.conversations[conversation_id].turns] == [
        "do you ship abroad",
        "and to Norway",
    ]
    assert fake.requests[1].json["conversation_id"] == conversation_id
    assert "authorization" not in fake.requests[1].headers


async def test_dify_blocking(dify: tuple[DifyFake, httpx.AsyncClient]) -> None:
    fake, client = dify
    fake.answer_tokens = 3
    r = await client.post("/v1/chat-messages", json=ask("hi", response_mode="blocking"))
    assert r.status_code == 200
    body = r.json()
    assert (body["event"], body["mode"], body["answer"]) == ("message", "chat", "Echo: hi alpha")
    assert body["id"] == body["message_id"] and body["metadata"]["usage"]["completion_tokens"] == 3
    assert fake.conversations[body["conversation_id"]].turns == [("hi", "Echo: hi alpha")]


async def test_dify_request_errors(dify: tuple[DifyFake, httpx.AsyncClient]) -> None:
    fake, client = dify
    r = await client.post(
        "/v1/chat-messages", json=ask(), headers={"Authorization": "Bearer app-wrong"}
    )
    assert (r.status_code, r.json()["code"], r.json()["status"]) == (401, "unauthorized", 401)
    for missing in ("user", "query"):
        body = {k: v for k, v in ask().items() if k != missing}
        r = await client.post("/v1/chat-messages", json=body)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_param")
    r = await client.post("/v1/chat-messages", json=ask(conversation_id=str(uuid.uuid4())))
    assert r.status_code == 404
    assert r.json() == {"code": "not_found", "message": "Conversation Not Exists.", "status": 404}
    conversation_id = (await stream_events(client, ask()))[-1]["conversation_id"]
    r = await client.post(
        "/v1/chat-messages", json=ask(conversation_id=conversation_id, user="someone-else")
    )
    assert r.status_code == 404
    assert not fake.queue and len(fake.conversations) == 1


async def test_dify_stop_ends_the_running_stream(dify: tuple[DifyFake, httpx.AsyncClient]) -> None:
    fake, client = dify
    fake.token_rate, fake.answer_tokens = 50, 100  # two seconds unless stopped

    async def stop_once(event: dict[str, Any]) -> None:
        if event["event"] == "message" and event["answer"] == " do":
            r = await client.post(
                f"/v1/chat-messages/{event['task_id']}/stop", json={"user": "visitor-1"}
            )
            assert r.json() == {"result": "success"}

    start = time.monotonic()
    events = await stream_events(client, ask(), stop_once)
    assert time.monotonic() - start < 1
    task_id = events[0]["task_id"]
    assert fake.stopped == [task_id]
    assert events[-1]["event"] == "message_end"  # as Dify does: the partial answer is ended
    assert fake.requests[0].outcome == "stopped" and fake.requests[0].tokens_sent < 10

    fake.message_end_on_stop = False
    events = await stream_events(client, ask(), stop_once)
    assert events[-1]["event"] == "message" and fake.requests[-2].outcome == "stopped"

    # another user's stop succeeds (as in Dify) but stops nothing
    fake.answer_tokens = 5
    events = await stream_events(client, ask())
    r = await client.post(
        f"/v1/chat-messages/{events[0]['task_id']}/stop", json={"user": "intruder"}
    )
    assert r.json() == {"result": "success"} and events[-1]["event"] == "message_end"


async def test_dify_pings_agent_mode_replace_and_workflow(
    dify: tuple[DifyFake, httpx.AsyncClient],
) -> None:
    fake, client = dify
    fake.agent_mode, fake.replace_with, fake.answer_tokens = True, "Sorry, I can't say that.", 3
    fake.first_token_latency, fake.ping_interval = 0.13, 0.05
    events = await stream_events(client, ask("hi"))
    kinds = [e["event"] for e in events]
    assert kinds == ["agent_thought", "ping", "ping"] + ["agent_message"] * 3 + [
        "message_replace",
        "message_end",
    ]
    assert answer_of(events, "agent_message") == "Echo: hi alpha"
    assert events[-2]["answer"] == "Sorry, I can't say that."
    r = await client.post("/v1/chat-messages", json=ask(response_mode="blocking"))
    assert (r.status_code, r.json()["code"]) == (400, "invalid_param")

    fake.reset()
    fake.workflow_events, fake.answer_tokens = True, 2
    kinds = [e["event"] for e in await stream_events(client, ask("hi"))]
    assert kinds[:4] == ["workflow_started", "node_started", "node_finished", "node_started"]
    assert kinds[4:] == ["message", "message", "node_finished", "workflow_finished", "message_end"]


async def test_dify_faults(dify: tuple[DifyFake, httpx.AsyncClient]) -> None:
    fake, client = dify
    fake.enqueue({"mode": "rate_limit", "retry_after": 3}, "error")
    r = await client.post("/v1/chat-messages", json=ask())
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json() == {"code": "rate_limit_error", "message": "Rate Limit Error", "status": 429}
    r = await client.post("/v1/chat-messages", json=ask())
    assert (r.status_code, r.json()["code"]) == (500, "internal_server_error")
    assert not fake.conversations  # nothing started

    fake.enqueue(
        "stream_error",
        {"mode": "malformed", "after_tokens": 0},
        {"mode": "drop", "after_tokens": 4},
    )
    events = await stream_events(client, ask())
    assert [e["event"] for e in events] == ["message", "message", "error"]
    assert events[-1]["code"] == "completion_request_error" and events[-1]["status"] == 400
    async with client.stream("POST", "/v1/chat-messages", json=ask()) as r:
        lines = [line async for line in r.aiter_lines() if line]
    assert lines[0] == "data: {not json" and json.loads(lines[-1][6:])["event"] == "message_end"
    got: list[str] = []

    async def collect(event: dict[str, Any]) -> None:
        got.append(event["answer"])

    with pytest.raises(httpx.RemoteProtocolError):  # the chunked body never ends
        await stream_events(client, ask(), collect)
    assert "".join(got) == "Echo: do you ship" and fake.requests[-1].outcome == "dropped"


async def test_dify_hang_ends_when_the_client_leaves(
    dify: tuple[DifyFake, httpx.AsyncClient],
) -> None:
    fake, client = dify
    fake.mode = "hang"
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/chat-messages", json=ask(), timeout=0.2)
    await eventually(lambda: fake.requests[0].outcome == "disconnected")
    assert fake.in_flight == 0 and isinstance(fake.requests[0], RecordedRequest)

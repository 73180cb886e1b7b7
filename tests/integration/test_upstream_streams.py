"""The upstream responders' streams on the wire: the OpenAI-compatible and Dify responders as the
registry builds them (the SDK's client over the aiohttp transport), against the fakes and against
a scripted server-sent-events server, both real HTTP servers on loopback. Covers how chunks are
read (usage, `[DONE]`, an error chunk, a malformed line, a dropped connection, a body without
`[DONE]`, events split across reads), how errors map, and that connections are reused."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from frontdesk.config import Settings
from frontdesk.responders.base import AnswerRequest, Delta, FinalAnswer, ResponderError
from frontdesk.responders.breaker import MemoryBreakerStore
from frontdesk.responders.config import seal_responder
from frontdesk.responders.registry import ResponderFactory
from frontdesk.responders.sse import EventStream
from frontdesk.responders.transport import tls_context
from frontdesk.security.keys import SecretBox
from tests.fakes import DifyFake, FakeServer, OpenAIFake

MODEL = "gpt-4o-mini"
REQUEST = AnswerRequest("site", "conv", "visitor-1", "where is my order", [], "en", "Shop")


def no_reads() -> Any:
    raise AssertionError("upstream responders read nothing")


def make_factory() -> ResponderFactory:
    settings = Settings()
    return ResponderFactory(
        settings=settings,
        box=SecretBox(settings.server_key),
        read_scope=no_reads,
        breaker_store=MemoryBreakerStore(),
    )


@pytest.fixture
async def factory() -> AsyncIterator[ResponderFactory]:
    made = make_factory()
    yield made
    await made.close()


@pytest.fixture(scope="module")
async def openai_upstream() -> AsyncIterator[tuple[OpenAIFake, str]]:
    fake = OpenAIFake(api_key="sk-test", model=MODEL)
    async with FakeServer(fake) as base_url:
        yield fake, base_url


@pytest.fixture
def openai(openai_upstream: tuple[OpenAIFake, str]) -> tuple[OpenAIFake, str]:
    openai_upstream[0].reset()
    return openai_upstream


def upstream(factory: ResponderFactory, raw: dict[str, Any]) -> Any:
    """The first link's responder, as a turn's chain holds it (no retries, no fallback)."""
    return factory.build(seal_responder(raw, factory.box)).links[0].responder


def openai_responder(factory: ResponderFactory, base_url: str, **extra: Any) -> Any:
    raw = {"kind": "openai", "base_url": f"{base_url}/v1", "api_key": "sk-test", "model": MODEL}
    return upstream(factory, {**raw, **extra})


async def collect(responder: Any) -> tuple[list[str], FinalAnswer | ResponderError]:
    deltas: list[str] = []
    try:
        async for item in responder.answer(REQUEST):
            if isinstance(item, Delta):
                deltas.append(item.text)
            else:
                return deltas, item
    except ResponderError as error:
        return deltas, error
    raise AssertionError("the stream ended without a final answer")


# --- OpenAI-compatible, against the fake -------------------------------------------------------


async def test_openai_streams_text_and_usage_and_reuses_its_connection(
    factory: ResponderFactory, openai: tuple[OpenAIFake, str]
) -> None:
    fake, base_url = openai
    fake.answer_tokens = 6
    responder = openai_responder(factory, base_url)
    for _ in range(3):
        deltas, final = await collect(responder)
        assert isinstance(final, FinalAnswer)
        assert final.text == "".join(deltas) == "Echo: where is my order alpha"
        prompt = sum(len(m["content"].split()) for m in fake.requests[-1].json["messages"])
        assert final.usage == {
            "prompt_tokens": prompt,
            "completion_tokens": 6,
            "total_tokens": prompt + 6,
        }
        assert final.meta == {"responder": "openai", "model": MODEL}
    sent = fake.requests[0].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    # The body is read past [DONE] to its end, so one connection carried all three answers.
    assert len({r.client_port for r in fake.requests}) == 1
    assert [r.outcome for r in fake.requests] == ["completed"] * 3


async def test_openai_error_chunk_is_a_server_error_after_the_text_so_far(
    factory: ResponderFactory, openai: tuple[OpenAIFake, str]
) -> None:
    fake, base_url = openai
    fake.enqueue({"mode": "stream_error", "after_tokens": 2})
    deltas, error = await collect(openai_responder(factory, base_url))
    assert deltas == ["Echo:", " where"]
    assert isinstance(error, ResponderError) and error.kind == "server_error"
    assert "The server had an error" in str(error)


async def test_openai_malformed_chunk_is_a_protocol_error(
    factory: ResponderFactory, openai: tuple[OpenAIFake, str]
) -> None:
    fake, base_url = openai
    fake.enqueue({"mode": "malformed", "after_tokens": 1})
    deltas, error = await collect(openai_responder(factory, base_url))
    assert deltas == ["Echo:"]
    assert isinstance(error, ResponderError) and error.kind == "protocol"
    assert error.retryable


async def test_openai_dropped_connection_is_a_protocol_error_and_not_reused(
    factory: ResponderFactory, openai: tuple[OpenAIFake, str]
) -> None:
    fake, base_url = openai
    fake.enqueue({"mode": "drop", "after_tokens": 3})
    responder = openai_responder(factory, base_url)
    deltas, error = await collect(responder)
    assert deltas == ["Echo:", " where", " is"]
    assert isinstance(error, ResponderError) and error.kind == "protocol"
    deltas, final = await collect(responder)  # the next answer gets a new connection
    assert isinstance(final, FinalAnswer) and final.text == "".join(deltas)
    assert fake.requests[0].client_port != fake.requests[1].client_port


@pytest.mark.parametrize(
    ("step", "kind", "retry_after_s"),
    [("error", "server_error", None), ("rate_limit", "rate_limited", 0.5)],
)
async def test_openai_http_errors_map_to_kinds(
    factory: ResponderFactory,
    openai: tuple[OpenAIFake, str],
    step: str,
    kind: str,
    retry_after_s: float | None,
) -> None:
    fake, base_url = openai
    fake.enqueue({"mode": step, "retry_after": 0.5})
    deltas, error = await collect(openai_responder(factory, base_url))
    assert deltas == []
    assert isinstance(error, ResponderError) and error.kind == kind
    assert error.retry_after_s == retry_after_s


async def test_openai_wrong_key_is_auth_and_refused_connection_is_connect(
    factory: ResponderFactory, openai: tuple[OpenAIFake, str]
) -> None:
    _, base_url = openai
    _, error = await collect(openai_responder(factory, base_url, api_key="sk-wrong"))
    assert isinstance(error, ResponderError) and error.kind == "auth"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        _, error = await collect(openai_responder(factory, closed))
    assert isinstance(error, ResponderError) and error.kind == "connect"


async def test_openai_read_timeout_is_a_timeout(
    factory: ResponderFactory, openai: tuple[OpenAIFake, str]
) -> None:
    fake, base_url = openai
    fake.enqueue({"mode": "stall", "after_tokens": 1, "hang_seconds": 5})
    responder = openai_responder(factory, base_url, timeouts={"total_s": 0.3})
    deltas, error = await collect(responder)
    assert deltas == ["Echo:"]
    assert isinstance(error, ResponderError) and error.kind == "timeout"


async def test_openai_cancelled_answer_closes_the_upstream_request(
    factory: ResponderFactory, openai: tuple[OpenAIFake, str]
) -> None:
    fake, base_url = openai
    fake.token_rate = 20
    fake.answer_tokens = 200
    responder = openai_responder(factory, base_url)
    first = asyncio.Event()

    async def listen() -> None:
        async for _ in responder.answer(REQUEST):
            first.set()

    task = asyncio.create_task(listen())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if fake.requests[0].outcome != "pending":
            break
        await asyncio.sleep(0.02)
    assert fake.requests[0].outcome == "disconnected"


# --- OpenAI-compatible, against scripted bytes -------------------------------------------------


class ScriptedStream:
    """An OpenAI-compatible endpoint that answers every request with the same bytes, written in
    the given pieces (so events may be split across reads), then ends the body."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for piece in self.pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def chunk(content: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}}]
    body = {"object": "chat.completion.chunk", "choices": choices, "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\r\n\r\n"


async def test_openai_reads_events_split_across_reads_crlf_comments_and_no_done(
    factory: ResponderFactory,
) -> None:
    whole = (
        b": keep-alive comment\r\n\r\n"
        + chunk("Hel")
        + chunk("lo")
        + chunk(usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    )
    # Cut in the middle of lines and of the JSON; the body ends without [DONE].
    app = ScriptedStream(whole[:7], whole[7:40], whole[40:41], whole[41:])
    async with FakeServer(app) as base_url:
        deltas, final = await collect(openai_responder(factory, base_url))
    assert deltas == ["Hel", "lo"]
    assert isinstance(final, FinalAnswer) and final.text == "Hello"
    assert final.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


async def test_openai_done_ends_the_answer_and_an_empty_answer_is_a_protocol_error(
    factory: ResponderFactory,
) -> None:
    app = ScriptedStream(chunk("Yes") + b"data: [DONE]\n\n" + chunk("never read"))
    async with FakeServer(app) as base_url:
        deltas, final = await collect(openai_responder(factory, base_url))
    assert deltas == ["Yes"] and isinstance(final, FinalAnswer) and final.usage == {}
    async with FakeServer(ScriptedStream(chunk(""), b"data: [DONE]\n\n")) as base_url:
        deltas, error = await collect(openai_responder(factory, base_url))
    assert deltas == [] and isinstance(error, ResponderError) and error.kind == "protocol"


def self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile)


async def test_https_upstreams_are_verified_as_httpx_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = self_signed(tmp_path)
    fake = OpenAIFake(api_key="sk-test", model=MODEL)
    async with FakeServer(fake, tls=tls) as base_url:
        for trusted in (False, True):
            if trusted:  # the certificate trusted the way httpx trusts one: SSL_CERT_FILE
                monkeypatch.setenv("SSL_CERT_FILE", tls[0])
            # The process builds its TLS context once (at start, from its environment); here
            # the environment changes mid-process, so the context is built again.
            tls_context.cache_clear()
            made = make_factory()
            try:
                _, outcome = await collect(openai_responder(made, base_url))
            finally:
                await made.close()
                tls_context.cache_clear()
            if trusted:
                assert isinstance(outcome, FinalAnswer) and outcome.text.startswith("Echo:")
            else:
                assert isinstance(outcome, ResponderError) and outcome.kind == "connect"
    assert len(fake.requests) == 1  # the unverified attempt never reached the server


# --- Dify -----------------------------------------------------------------------------------


async def test_dify_streams_and_reuses_its_connection_then_a_malformed_event_is_protocol(
    factory: ResponderFactory,
) -> None:
    fake = DifyFake(api_key="app-test")
    async with FakeServer(fake) as base_url:
        responder = upstream(factory, {"kind": "dify", "base_url": base_url, "api_key": "app-test"})
        for _ in range(2):
            deltas, final = await collect(responder)
            assert isinstance(final, FinalAnswer) and final.text == "".join(deltas)
            assert final.usage["total_tokens"] > 0
        assert len({r.client_port for r in fake.requests}) == 1
        fake.enqueue({"mode": "malformed", "after_tokens": 1})
        deltas, error = await collect(responder)
    assert len(deltas) == 1
    assert isinstance(error, ResponderError) and error.kind == "protocol"


# --- the server-sent-events reader ------------------------------------------------------------


def test_event_stream_joins_data_lines_and_skips_other_fields() -> None:
    events = EventStream()
    assert events.feed(b"event: ping\n\n") == []
    assert events.feed(b"id: 1\nretry: 10\ndata: one\ndata:two\n") == []
    assert events.feed(b"\n") == [b"one\ntwo"]
    assert events.feed(b"data: a\n\ndata: b\n\nda") == [b"a", b"b"]
    assert events.feed(b"ta: c") == []
    assert events.end() == [b"c"]
    assert events.end() == []

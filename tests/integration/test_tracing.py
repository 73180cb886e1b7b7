"""Tracing and request context, in process: the spans of a chat turn and their parents (SDK's
in-memory exporter), request ids, and log lines that carry the request and trace ids."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id
from sqlalchemy import update

from frontdesk.config import Settings
from frontdesk.logs import configure_logging
from frontdesk.main import create_app
from frontdesk.models import Site
from frontdesk.observability import tracing
from frontdesk.services import Services
from tests.conftest import PUBLIC_URL, make_site, start_visitor
from tests.fakes import FakeServer, OpenAIFake

MESSAGES_ROUTE = "POST /api/widget/v1/conversations/{conversation_id}/messages"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def app(settings: Settings, exporter: InMemorySpanExporter) -> AsyncIterator[FastAPI]:
    """The app traced as `install_tracing` traces it in production, into memory."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "frontdesk"}), sampler=tracing.default_sampler()
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    application = create_app(settings)
    assert tracing.install_tracing(application, application.state.services.db, provider)

    async def noisy() -> dict[str, str]:
        logging.getLogger("frontdesk.test").warning("inside the route")
        return {"ok": "yes"}

    async def boom() -> None:
        raise RuntimeError("the ledger is gone")

    application.add_api_route("/test/noisy", noisy)
    application.add_api_route("/test/boom", boom)
    try:
        async with application.router.lifespan_context(application):
            yield application
    finally:
        tracing.uninstall_tracing(application)
        provider.shutdown()


@pytest.fixture
async def openai_upstream() -> AsyncIterator[str]:
    async with FakeServer(OpenAIFake(api_key="sk-test", model="gpt-4o-mini")) as base_url:
        yield base_url


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The production logging setup, writing to a buffer instead of stderr."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    real_stderr, sys.stderr = sys.stderr, stream
    try:
        configure_logging("info")
    finally:
        sys.stderr = real_stderr
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


def spans_named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


async def test_a_chat_turn_is_one_trace(
    client: httpx.AsyncClient,
    services: Services,
    exporter: InMemorySpanExporter,
    openai_upstream: str,
) -> None:
    responder = {
        "kind": "openai",
        "base_url": f"{openai_upstream}/v1",
        "api_key": "sk-test",
        "model": "gpt-4o-mini",
    }
    site = await make_site(services, responder=responder, options={"answer_cache": False})
    visitor = await start_visitor(client, site.id)
    conversation_id = await visitor.conversation()
    exporter.clear()
    sent = await visitor.send(conversation_id, "where is my order")
    assert sent.status_code == 202
    await services.turns.drain()
    spans = exporter.get_finished_spans()

    (server,) = spans_named(spans, MESSAGES_ROUTE)
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None and server.attributes.get("http.status_code") == 202
    (turn,) = spans_named(spans, "chat.turn")
    assert parent_id(turn) == span_id(server)
    assert turn.attributes is not None
    assert turn.attributes["frontdesk.conversation_id"] == conversation_id

    (attempt,) = spans_named(spans, "responder.attempt")
    assert parent_id(attempt) == span_id(turn)
    attributes = dict(attempt.attributes or {})
    assert attributes["frontdesk.responder.kind"] == "openai"
    assert attributes["frontdesk.responder.outcome"] == "ok"
    assert attributes["frontdesk.responder.attempt"] == 1
    assert 0 <= float(attributes["frontdesk.responder.ttft_ms"]) < 10_000

    # The upstream call is an httpx client span inside the attempt.
    upstream = [s for s in spans if s.kind is SpanKind.CLIENT and parent_id(s) == span_id(attempt)]
    assert [s.name for s in upstream] == ["POST"]

    # SQL: the visitor's message stored under the request, the answer stored under the turn.
    # Background polling (the job worker) is not traced: every SQL span belongs to the turn.
    sql = [s for s in spans if s.attributes and "db.system" in s.attributes]
    assert {trace_id(s) for s in sql} == {trace_id(server)}
    assert {s.attributes["db.system"] for s in sql if s.attributes} == {
        "sqlite" if services.db.dialect == "sqlite" else "postgresql"
    }
    inserts = [s for s in sql if s.name.startswith("INSERT")]
    assert any(parent_id(s) == span_id(server) for s in inserts)
    assert any(parent_id(s) == span_id(turn) for s in inserts)


async def test_probes_are_not_traced(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/api/v1/metrics")).status_code == 401
    names = [s.name for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert names == ["GET /api/v1/metrics"]


async def test_log_lines_carry_request_and_trace_ids(
    app: FastAPI,
    client: httpx.AsyncClient,
    exporter: InMemorySpanExporter,
    log_lines: io.StringIO,
) -> None:
    response = await client.get("/test/noisy")
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    (server,) = spans_named(exporter.get_finished_spans(), "GET /test/noisy")
    entries = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    (entry,) = [e for e in entries if e["message"] == "inside the route"]
    assert entry["request_id"] == request_id
    assert entry["trace_id"] == format_trace_id(trace_id(server))
    assert len(entry["span_id"]) == 16

    # The 500 handler runs outside the request-id middleware; its line still names both ids.
    raw = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=PUBLIC_URL
    )
    async with raw:
        failed = await raw.get("/test/boom", headers={"X-Request-ID": "edge-7f3a9c2e"})
    assert failed.status_code == 500 and failed.headers["x-request-id"] == "edge-7f3a9c2e"
    (boom,) = spans_named(exporter.get_finished_spans(), "GET /test/boom")
    entries = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    (entry,) = [e for e in entries if e["message"] == "unhandled error"]
    assert entry["request_id"] == "edge-7f3a9c2e"
    assert entry["trace_id"] == format_trace_id(trace_id(boom))
    assert entry["error_group_id"].startswith("err_")
    assert "the ledger is gone" in entry["exception"]

    # Outside a request, no ids.
    logging.getLogger("frontdesk.test").warning("outside")
    entries = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    (entry,) = [e for e in entries if e["message"] == "outside"]
    assert "request_id" not in entry and "trace_id" not in entry


async def test_the_turn_logs_under_the_request_id(
    client: httpx.AsyncClient, services: Services, log_lines: io.StringIO
) -> None:
    # A stored responder that no longer parses makes the turn, in its own task, log a warning.
    site = await make_site(services)
    async with services.db.session_scope() as session:
        await session.execute(
            update(Site).where(Site.id == site.id).values(responder={"kind": "retired"})
        )
    visitor = await start_visitor(client, site.id)
    sent = await visitor.send(await visitor.conversation(), "hello")
    await services.turns.drain()
    entries = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    (entry,) = [e for e in entries if e["message"].startswith("answer failed")]
    assert entry["request_id"] == sent.headers["x-request-id"]
    assert len(entry["trace_id"]) == 32


@pytest.mark.parametrize(
    ("inbound", "kept"),
    [
        ("3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b", True),
        ("edge:01HZX3K9-req.42", True),
        ("short", False),
        ("x" * 129, False),
        ("has space in it", False),
        ("semi;colon-12345", False),
        ("ünïcödé-12345678", False),
    ],
)
async def test_request_ids(client: httpx.AsyncClient, inbound: str, kept: bool) -> None:
    response = await client.get("/health", headers={"X-Request-ID": inbound.encode()})
    returned = response.headers["x-request-id"]
    if kept:
        assert returned == inbound
    else:
        assert returned != inbound and len(returned) == 32 and int(returned, 16) >= 0
    other = await client.get("/health")
    assert other.headers["x-request-id"] != returned


def test_tracing_is_off_unless_configured(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.tracing_enabled(settings)
    assert tracing.tracing_enabled(settings.model_copy(update={"otel_enabled": True}))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing.tracing_enabled(settings)


async def test_off_means_nothing_installed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    application = create_app(settings)
    assert not getattr(application, "_is_instrumented_by_opentelemetry", False)
    assert not SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    noop: Any = tracing.responder_attempt("knowledge", 1)
    assert not isinstance(noop, tracing.ResponderAttempt)
    await application.state.services.db.dispose()

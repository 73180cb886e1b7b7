"""Tracing: OpenTelemetry for HTTP requests, SQL and outgoing HTTP, plus spans of our own around
chat turns and each responder attempt.

Off unless `FRONTDESK_OTEL_ENABLED=true` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Off means nothing is installed: no middleware, no
SQLAlchemy listeners, no patched httpx, and `turn_span`/`responder_attempt` hand out a shared
no-op. On, spans are batched to the OTLP/HTTP exporter, which reads the standard `OTEL_EXPORTER_*`
variables (endpoint, headers, timeout, compression); the service is `frontdesk` unless
`OTEL_SERVICE_NAME` says otherwise.

A trace starts at something we can name: a request, or a span of our own. A SQL statement or an
outgoing call with no parent is background work (the job worker polling its queue) and is
not sampled; without that rule an idle process sends a trace every second. Setting the standard
`OTEL_TRACES_SAMPLER` replaces this rule with the one it names.

The tracer provider and the httpx and SQLAlchemy instrumentation are process-wide (that is how
OpenTelemetry works); `install_tracing` is called once per app and `uninstall_tracing` undoes it
(tests build many apps in one process). Health probes and Prometheus scrapes are not traced: they
would drown the traces that matter.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import Attributes

from frontdesk import __version__
from frontdesk.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

    from frontdesk.db import Database

DEFAULT_SERVICE_NAME = "frontdesk"
# Probes and scrapes, matched against the full URL: `/api/v1/metrics` stays traced.
EXCLUDED_URLS = r"//[^/]+/(health|ready|metrics)(\?|$)"

_process_provider: TracerProvider | None = None
_tracer: Tracer | None = None


class _NamedRoots(Sampler):
    """The root sampler: every root span except a bare client span (SQL, outgoing HTTP)."""

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "NamedRoots"


def default_sampler() -> Sampler:
    return ParentBased(root=_NamedRoots())


def tracing_enabled(settings: Settings) -> bool:
    return settings.otel_enabled or bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def process_tracer_provider() -> TracerProvider:
    """The process's provider, exporting to OTLP/HTTP in batches; made once."""
    global _process_provider
    if _process_provider is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create(
            {
                SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
                SERVICE_VERSION: __version__,
            }
        )
        # The SDK reads OTEL_TRACES_SAMPLER itself when given no sampler.
        sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else default_sampler()
        provider = TracerProvider(resource=resource, sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _process_provider = provider
    return _process_provider


def install_tracing(
    app: FastAPI, db: Database, provider: TracerProvider | None = None
) -> TracerProvider | None:
    """Instrument the app, its database engines and httpx, when tracing is on (or a provider is
    given, as tests do). Returns the provider in use, or None when tracing is off."""
    global _tracer
    if provider is None and not tracing_enabled(db.settings):
        return None
    # Imported here: a process that does not trace never loads the instrumentation.
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    provider = provider or process_tracer_provider()
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        # One span per ASGI send would mean one per streamed token of an SSE answer.
        exclude_spans=["receive", "send"],
    )
    engines = {id(e): e.sync_engine for e in (db.writer, db.reader)}
    sqlalchemy = SQLAlchemyInstrumentor()
    if not sqlalchemy.is_instrumented_by_opentelemetry:
        # Its declared range stops at SQLAlchemy 2.0; the event hooks it uses are unchanged in
        # 2.1 (which we run), as the tracing tests check.
        sqlalchemy.instrument(
            engines=list(engines.values()), tracer_provider=provider, skip_dep_check=True
        )
    httpx = HTTPXClientInstrumentor()
    if not httpx.is_instrumented_by_opentelemetry:
        httpx.instrument(tracer_provider=provider)
    _tracer = provider.get_tracer("frontdesk", __version__)
    return provider


def uninstall_tracing(app: FastAPI) -> None:
    global _tracer
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    FastAPIInstrumentor.uninstrument_app(app)
    for instrumentor in (SQLAlchemyInstrumentor(), HTTPXClientInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    _tracer = None


def current_trace_ids() -> tuple[str, str] | None:
    """The current trace and span id (hex), for log records and error samples."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def turn_span(site_id: str, conversation_id: str) -> AbstractContextManager[Any]:
    """The span of one chat turn (retrieval, responders, storing the answer)."""
    if _tracer is None:
        return nullcontext()
    return _tracer.start_as_current_span(
        "chat.turn",
        attributes={"frontdesk.site_id": site_id, "frontdesk.conversation_id": conversation_id},
    )


def sql_span(statement: str, system: str, database: str) -> AbstractContextManager[Any]:
    """A client span for one statement run as plain SQL, outside SQLAlchemy, named and described
    as SQLAlchemy's instrumentation describes the others (`INSERT frontdesk.db`)."""
    if _tracer is None:
        return nullcontext()
    return _tracer.start_as_current_span(
        f"{statement.split(None, 1)[0]} {database}",
        kind=SpanKind.CLIENT,
        attributes={"db.system": system, "db.name": database, "db.statement": statement},
    )


class ResponderAttempt:
    """One attempt of one responder link: from the call to its final answer or failure.

    The span is made current only while the responder itself runs (`active()`), never across the
    chain's `yield`, so the turn's own work between deltas does not nest under it.
    """

    def __init__(self, tracer: Tracer, name: str, attempt: int) -> None:
        self.started = time.perf_counter()
        self.finished = False
        self.span: Span = tracer.start_span(
            "responder.attempt",
            kind=SpanKind.INTERNAL,
            attributes={
                "frontdesk.responder.name": name,
                "frontdesk.responder.kind": name.split(":", 1)[0],
                "frontdesk.responder.attempt": attempt,
            },
        )

    @contextmanager
    def active(self) -> Iterator[None]:
        with trace.use_span(self.span, record_exception=False, set_status_on_exception=False):
            yield

    def first_item(self) -> None:
        ttft_ms = round((time.perf_counter() - self.started) * 1000, 1)
        self.span.set_attribute("frontdesk.responder.ttft_ms", ttft_ms)

    def finish(self, outcome: str, message: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        self.span.set_attribute("frontdesk.responder.outcome", outcome)
        if outcome != "ok":
            self.span.set_status(Status(StatusCode.ERROR, message or outcome))
        self.span.end()


class _NoAttempt:
    @contextmanager
    def active(self) -> Iterator[None]:
        yield

    def first_item(self) -> None:
        return None

    def finish(self, outcome: str, message: str | None = None) -> None:
        return None


_NO_ATTEMPT = _NoAttempt()
AttemptSpan = ResponderAttempt | _NoAttempt


def responder_attempt(name: str, attempt: int) -> AttemptSpan:
    return _NO_ATTEMPT if _tracer is None else ResponderAttempt(_tracer, name, attempt)


def outcome_of(exc: BaseException) -> str:
    """A responder attempt's outcome from how it ended: the error kind, or what stopped it."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str):
        return kind
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    return "error"

"""Prometheus metrics: every FrontDesk metric family, the calls that record them, and `/metrics`.

Owns the names, types, labels and label bounds (docs/operations.md "Metrics reference",
docs/decisions/0014-prometheus-metrics.md). The rest of the code records through the small
functions below, never through the metric objects, so that label values are normalised in one
place: every label takes values from a fixed set or from code-defined names (route templates, job
kinds, configured upstreams), never from visitors, sites or request paths. Recording costs a dict
lookup and a locked add, and never touches the network or the database.

With `PROMETHEUS_MULTIPROC_DIR` set, prometheus-client keeps each process's values in memory-mapped
files in that directory and `exposition` merges the files of every process (several `frontdesk
serve` processes on one host, a separate `frontdesk worker`), so any process answers for all of
them. Without it, values live in this process's default registry. A process's live gauges
(open connections, circuit states, build info) are removed when it stops serving, or, when it was
killed, by the next process that starts or serves a scrape; its counters stay, so totals never go
back.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from frontdesk import __version__

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def sweep_dead_processes() -> None:
    """Drop the live gauges of processes that ended without saying so (killed, crashed)."""
    if MULTIPROC_DIR is None:
        return
    for path in glob.glob(os.path.join(MULTIPROC_DIR, "gauge_live*.db")):
        match = _LIVE_FILE.match(os.path.basename(path))
        if match and not _process_alive(int(match.group(1))):
            mark_process_dead(int(match.group(1)), MULTIPROC_DIR)  # type: ignore[no-untyped-call]


def process_stopped() -> None:
    """This process serves no more: its live gauges stop counting now. (uvicorn ends a process
    by re-raising SIGTERM after shutdown, so `atexit` alone would not run.)"""
    if MULTIPROC_DIR is not None:
        mark_process_dead(os.getpid(), MULTIPROC_DIR)  # type: ignore[no-untyped-call]


if MULTIPROC_DIR is not None:
    if not MULTIPROC_DIR:
        raise RuntimeError("PROMETHEUS_MULTIPROC_DIR is set but empty; name a directory.")
    # prometheus-client opens its files when the first metric below is created.
    os.makedirs(MULTIPROC_DIR, exist_ok=True)
    # Live gauges under this pid are a dead process's whose pid was reused: none are ours yet.
    process_stopped()
    sweep_dead_processes()
    atexit.register(process_stopped)  # `frontdesk worker` and other plain exits

# `_created` samples would double the series count for a timestamp Prometheus does not use.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ANSWER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
WEBHOOK_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

UNMATCHED = "unmatched"
OTHER = "other"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The contract's close codes (docs/protocol.md) and the standard ones servers and browsers use;
# a client may close with any number from 1000 to 4999, so the rest become "other".
CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1012, 1013}
    | {4401, 4403, 4408, 4429, 4508}
)
RESPONDER_KINDS = frozenset({"knowledge", "openai", "dify", "flow"})
RESPONDER_ERRORS = frozenset(
    {
        "timeout",
        "connect",
        "server_error",
        "rate_limited",
        "protocol",
        "auth",
        "bad_request",
        "circuit_open",
        "unavailable",
        "unknown_conversation",
    }
)
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
SERVER_ERROR_SURFACES = ("http", "websocket", "turn")
WEBHOOK_OUTCOMES = ("success", "http_error", "timeout", "network_error", "blocked")

HTTP_REQUESTS = Counter(
    "frontdesk_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "frontdesk_http_request_duration_seconds",
    "Time from the request to the end of its response (the whole stream for SSE).",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
WS_OPEN = Gauge(
    "frontdesk_websocket_connections",
    "WebSocket connections open now, by endpoint.",
    ["endpoint"],
    multiprocess_mode="livesum",
)
WS_OPENED = Counter(
    "frontdesk_websocket_connections_opened_total",
    "WebSocket connections accepted, by endpoint.",
    ["endpoint"],
)
WS_RECEIVED = Counter(
    "frontdesk_websocket_frames_received_total",
    "WebSocket frames received from clients, by endpoint.",
    ["endpoint"],
)
WS_SENT = Counter(
    "frontdesk_websocket_frames_sent_total",
    "WebSocket frames sent to clients, by endpoint.",
    ["endpoint"],
)
WS_CLOSES = Counter(
    "frontdesk_websocket_closes_total",
    "WebSocket connections ended, by endpoint, close code and which side closed.",
    ["endpoint", "code", "by"],
)
RESPONDER_REQUESTS = Counter(
    "frontdesk_responder_requests_total",
    "Answers asked of a responder (one link of a chain), by responder kind and outcome.",
    ["responder", "outcome"],
)
RESPONDER_ERRORS_TOTAL = Counter(
    "frontdesk_responder_errors_total",
    "Responder failures, every attempt (retries included), by responder kind and error kind.",
    ["responder", "kind"],
)
RESPONDER_FIRST_TOKEN = Histogram(
    "frontdesk_responder_first_token_seconds",
    "Time from asking a responder to its first output (retries included).",
    ["responder"],
    buckets=ANSWER_BUCKETS,
)
RESPONDER_DURATION = Histogram(
    "frontdesk_responder_duration_seconds",
    "Time from asking a responder to its complete answer.",
    ["responder"],
    buckets=ANSWER_BUCKETS,
)
RESPONDER_TOKENS = Counter(
    "frontdesk_responder_tokens_total",
    "Tokens upstream engines reported using, by responder kind and type (prompt, completion).",
    ["responder", "type"],
)
CIRCUIT_STATE = Gauge(
    "frontdesk_responder_circuit_state",
    "Circuit breaker state of an upstream: 0 closed, 1 half-open, 2 open.",
    ["upstream"],
    multiprocess_mode="livemostrecent",
)
CIRCUIT_OPENED = Counter(
    "frontdesk_responder_circuit_opened_total",
    "Times an upstream's circuit breaker opened.",
    ["upstream"],
)
ANSWERS = Counter(
    "frontdesk_answers_total",
    "Answers given to visitors, by outcome (answered, cached, fallback).",
    ["outcome"],
)
ANSWER_DURATION = Histogram(
    "frontdesk_answer_duration_seconds",
    "Time from a visitor's message to the complete answer, as the visitor waits for it.",
    buckets=ANSWER_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "frontdesk_answer_cache_lookups_total",
    "Answer cache lookups, by result (hit, miss).",
    ["result"],
)
RATE_LIMITED = Counter(
    "frontdesk_rate_limit_rejections_total",
    "Requests refused by a rate limit (429), by policy.",
    ["policy"],
)
ORIGIN_REJECTED = Counter(
    "frontdesk_origin_rejections_total",
    "Requests and connections refused because their origin is not allowed, by check.",
    ["check"],
)
WEBHOOK_ATTEMPTS = Counter(
    "frontdesk_webhook_attempts_total",
    "Webhook delivery attempts, by outcome.",
    ["outcome"],
)
WEBHOOK_DURATION = Histogram(
    "frontdesk_webhook_attempt_duration_seconds",
    "Time one webhook delivery attempt took, until the response or the failure.",
    buckets=WEBHOOK_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "frontdesk_webhook_deliveries_total",
    "Webhook deliveries settled, by result (succeeded, dead).",
    ["result"],
)
WIDGET_EVENTS = Counter(
    "frontdesk_widget_events_total",
    "Analytics events and error reports the widget sent, by recorded event type.",
    ["type"],
)
SERVER_ERRORS = Counter(
    "frontdesk_server_errors_total",
    "Unexpected exceptions (bugs, crashed dependencies), by where they happened.",
    ["surface"],
)
BUILD_INFO = Gauge(
    "frontdesk_build_info",
    "Always 1; the labels name the running version.",
    ["version"],
    multiprocess_mode="livemax",
)
BUILD_INFO.labels(__version__).set(1)

# Known label values start at zero, so that rates and ratios exist before the first event.
for _surface in SERVER_ERROR_SURFACES:
    SERVER_ERRORS.labels(_surface)
for _result in ("hit", "miss"):
    CACHE_LOOKUPS.labels(_result)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_ATTEMPTS.labels(_outcome)
for _result in ("succeeded", "dead"):
    WEBHOOK_DELIVERIES.labels(_result)
for _outcome in ("answered", "cached", "fallback"):
    ANSWERS.labels(_outcome)

_http: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_http(route: str, method: str, status: int, seconds: float) -> None:
    """One HTTP response; `route` is a route template or `UNMATCHED`."""
    key = (route, method, status)
    children = _http.get(key)
    if children is None:
        name = method if method in HTTP_METHODS else OTHER
        children = (
            HTTP_REQUESTS.labels(route, name, str(status)),
            HTTP_DURATION.labels(route, name),
        )
        _http[key] = children
    children[0].inc()
    children[1].observe(seconds)


@dataclass(frozen=True, slots=True)
class WebSocketMetrics:
    """One endpoint's metrics, looked up once per connection rather than once per frame."""

    endpoint: str
    open: Gauge
    opened: Counter
    received: Counter
    sent: Counter

    def closed(self, code: int, by: str) -> None:
        WS_CLOSES.labels(self.endpoint, str(code) if code in CLOSE_CODES else OTHER, by).inc()


_websockets: dict[str, WebSocketMetrics] = {}


def websocket_metrics(endpoint: str) -> WebSocketMetrics:
    found = _websockets.get(endpoint)
    if found is None:
        found = WebSocketMetrics(
            endpoint,
            WS_OPEN.labels(endpoint),
            WS_OPENED.labels(endpoint),
            WS_RECEIVED.labels(endpoint),
            WS_SENT.labels(endpoint),
        )
        _websockets[endpoint] = found
    return found


def responder_kind(name: str) -> str:
    """`openai:api.example.com` → `openai`: hosts stay out of the per-answer labels."""
    kind = name.partition(":")[0]
    return kind if kind in RESPONDER_KINDS else OTHER


def responder_first_token(name: str, seconds: float) -> None:
    RESPONDER_FIRST_TOKEN.labels(responder_kind(name)).observe(seconds)


def responder_answered(name: str, seconds: float, usage: Mapping[str, int]) -> None:
    kind = responder_kind(name)
    RESPONDER_REQUESTS.labels(kind, "answered").inc()
    RESPONDER_DURATION.labels(kind).observe(seconds)
    for key, type_ in (("prompt_tokens", "prompt"), ("completion_tokens", "completion")):
        tokens = usage.get(key)
        if isinstance(tokens, int) and tokens > 0:
            RESPONDER_TOKENS.labels(kind, type_).inc(tokens)


def responder_failed(name: str) -> None:
    RESPONDER_REQUESTS.labels(responder_kind(name), "failed").inc()


def responder_error(name: str, kind: str) -> None:
    RESPONDER_ERRORS_TOTAL.labels(
        responder_kind(name), kind if kind in RESPONDER_ERRORS else OTHER
    ).inc()


_upstreams: set[str] = set()


def circuit_state(upstream: str, state: str) -> None:
    """The breaker state last seen for `upstream` (a configured `kind:host`)."""
    _upstreams.add(upstream)
    CIRCUIT_STATE.labels(upstream).set(CIRCUIT_STATES.get(state, 0))


def circuit_opened(upstream: str) -> None:
    CIRCUIT_OPENED.labels(upstream).inc()
    circuit_state(upstream, "open")


def known_upstreams() -> list[str]:
    """Upstreams whose breakers this process has used; `/metrics` re-reads their state."""
    return sorted(_upstreams)


def answer_finished(meta: Mapping[str, Any], seconds: float) -> None:
    if meta.get("cached"):
        outcome = "cached"
    elif meta.get("fallback"):
        outcome = "fallback"
    else:
        outcome = "answered"
    ANSWERS.labels(outcome).inc()
    ANSWER_DURATION.observe(seconds)


def answer_cache_lookup(hit: bool) -> None:
    CACHE_LOOKUPS.labels("hit" if hit else "miss").inc()


def rate_limited(policy: str) -> None:
    """`policy` is a name from `security.limits_policy` (a fixed set)."""
    RATE_LIMITED.labels(policy).inc()


def origin_rejected(check: str) -> None:
    """`check`: `site` (a site's allowlist), `preflight` or `handshake` (any site's)."""
    ORIGIN_REJECTED.labels(check).inc()


def webhook_attempt(status: int | None, error: str | None, seconds: float) -> None:
    if status is not None:
        outcome = "success" if 200 <= status < 300 else "http_error"
    elif error == "timeout":
        outcome = "timeout"
    elif error is not None and error.startswith("blocked"):
        outcome = "blocked"
    else:
        outcome = "network_error"
    WEBHOOK_ATTEMPTS.labels(outcome).inc()
    WEBHOOK_DURATION.observe(seconds)


def webhook_settled(result: str) -> None:
    """A delivery's final result: `succeeded`, or `dead` (given up, or its endpoint disabled)."""
    WEBHOOK_DELIVERIES.labels(result).inc()


def widget_events(types: Iterable[str]) -> None:
    """Recorded event types (a fixed set, `widget.event` for any other name)."""
    for type_ in types:
        WIDGET_EVENTS.labels(type_).inc()


def server_error(surface: str) -> None:
    SERVER_ERRORS.labels(surface).inc()


@dataclass(frozen=True, slots=True)
class QueuedJobs:
    """Jobs of one kind in one state, read from the database for a scrape."""

    state: str
    kind: str
    count: int
    oldest_age_s: float


class JobQueueCollector:
    """The job queue as of this scrape: a database fact, not a per-process value, so it is
    never written to the multiprocess files (no process's stale copy can outlive the truth)."""

    def __init__(self, rows: Iterable[QueuedJobs]) -> None:
        self.rows = list(rows)

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "frontdesk_job_queue_jobs",
            "Jobs in the queue now, by state (pending, running, dead) and kind.",
            labels=["state", "kind"],
        )
        age = GaugeMetricFamily(
            "frontdesk_job_queue_oldest_age_seconds",
            "How long the oldest due job has waited (pending) or run (running), by kind.",
            labels=["state", "kind"],
        )
        for row in self.rows:
            depth.add_metric([row.state, row.kind], row.count)
            if row.state != "dead":
                age.add_metric([row.state, row.kind], row.oldest_age_s)
        yield depth
        yield age


class ReadinessCollector:
    """The `/ready` checks of the process that answers the scrape, as 1 (passing) or 0."""

    def __init__(self, checks: Mapping[str, bool]) -> None:
        self.checks = dict(checks)

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "frontdesk_ready",
            "Readiness checks of the answering process (database, migrations, broker, worker).",
            labels=["check"],
        )
        for check, ok in sorted(self.checks.items()):
            ready.add_metric([check], 1.0 if ok else 0.0)
        yield ready


class _Scrape:
    def __init__(self, sources: list[Collector]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def exposition(*extra: Collector) -> bytes:
    """The Prometheus text format (version 0.0.4) of every process's metrics plus `extra`."""
    sources: list[Collector]
    if MULTIPROC_DIR is not None:
        sweep_dead_processes()
        sources = [MultiProcessCollector(None, MULTIPROC_DIR)]  # type: ignore[no-untyped-call]
    else:
        sources = [REGISTRY]
    return generate_latest(_Scrape([*sources, *extra]))

"""`GET /metrics` after real work: every metric family has samples and passes `promtool check
metrics`, the samples moved as the work says they must, the token guards the endpoint, and
several processes sharing a multiprocess directory are reported together.

promtool is Debian's (`make promtool`). Without it these tests skip locally, and fail when
FRONTDESK_TEST_REQUIRE_SERVICES=1 (CI), like the database services.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from websockets.asyncio.client import connect

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.actions.knowledge import do_add_document
from frontdesk.config import Settings
from frontdesk.jobs.queue import enqueue
from frontdesk.knowledge.ingest import parse_document
from frontdesk.main import create_app
from frontdesk.models import utcnow
from frontdesk.services import Services
from tests.conftest import ORIGIN, PUBLIC_URL, REQUIRE_SERVICES, make_site, serving, start_visitor
from tests.fakes import FakeServer, OpenAIFake
from tests.fakes.receiver import WebhookReceiver
from tests.processes import base_env, start_server
from tests.realtime.wsclient import chat_socket, open_socket
from tests.sse import parse_sse

EVIL = "https://evil.example"
MESSAGES_ROUTE = "/api/widget/v1/conversations/{conversation_id}/messages"
# Every family FrontDesk defines; after the workload below each must have samples.
FAMILIES = {
    "frontdesk_http_requests",
    "frontdesk_http_request_duration_seconds",
    "frontdesk_websocket_connections",
    "frontdesk_websocket_connections_opened",
    "frontdesk_websocket_frames_received",
    "frontdesk_websocket_frames_sent",
    "frontdesk_websocket_closes",
    "frontdesk_responder_requests",
    "frontdesk_responder_errors",
    "frontdesk_responder_first_token_seconds",
    "frontdesk_responder_duration_seconds",
    "frontdesk_responder_tokens",
    "frontdesk_responder_circuit_state",
    "frontdesk_responder_circuit_opened",
    "frontdesk_answers",
    "frontdesk_answer_duration_seconds",
    "frontdesk_answer_cache_lookups",
    "frontdesk_rate_limit_rejections",
    "frontdesk_origin_rejections",
    "frontdesk_webhook_attempts",
    "frontdesk_webhook_attempt_duration_seconds",
    "frontdesk_webhook_deliveries",
    "frontdesk_widget_events",
    "frontdesk_server_errors",
    "frontdesk_build_info",
    "frontdesk_job_queue_jobs",
    "frontdesk_job_queue_oldest_age_seconds",
    "frontdesk_ready",
}


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if REQUIRE_SERVICES:
            pytest.fail("promtool is required in CI (make promtool)")
        pytest.skip("promtool is not installed (make promtool)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


class Scrape:
    """One parsed `/metrics` answer."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
        return sum(
            sample.value
            for family in self.families.values()
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def labels(self, name: str, label: str) -> set[str]:
        return {
            sample.labels[label]
            for family in self.families.values()
            for sample in family.samples
            if sample.name == name and label in sample.labels
        }


async def scrape(client: httpx.AsyncClient, **headers: str) -> Scrape:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


@pytest.fixture
async def metrics_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with the job worker driven by the test, loopback webhooks allowed, and a breaker
    that opens at the first failure."""
    tuned = settings.model_copy(
        update={
            "run_worker": False,
            "webhook_allowed_hosts": "127.0.0.1",
            "responder_failure_threshold": 1,
        }
    )
    application = create_app(tuned)

    async def boom() -> None:
        raise RuntimeError("a bug, on purpose")

    application.add_api_route("/test/boom", boom, include_in_schema=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(metrics_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: the deliberate bug must come back as the server's 500.
    transport = httpx.ASGITransport(app=metrics_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url=PUBLIC_URL, headers={"Origin": ORIGIN}
    ) as client:
        yield client


async def ask(client: httpx.AsyncClient, auth: dict[str, str], conversation: str, text: str) -> Any:
    response = await client.post(
        f"/api/widget/v1/conversations/{conversation}/messages",
        headers={**auth, "Accept": "text/event-stream"},
        json={"client_id": str(uuid.uuid4()), "text": text},
    )
    assert response.status_code == 200, response.text
    return [e for n, e in parse_sse(response.text) if n == "message"][-1]["message"]


async def drain(services: Services) -> None:
    for _ in range(20):
        if not await services.worker.run_once():
            return


async def test_a_workload_moves_every_family_and_promtool_accepts_it(
    http: httpx.AsyncClient, metrics_app: FastAPI
) -> None:
    services: Services = metrics_app.state.services
    before = await scrape(http)

    # Knowledge answers: the first from the responder, the same question again from the cache.
    site = await make_site(services)
    document = parse_document(
        "# Opening hours\n\nThe shop opens at nine in the morning.",
        content_type="text/markdown",
        source="hours.md",
        fallback_title="Hours",
    )
    async with services.db.session_scope() as session:
        await do_add_document(session, site_id=site.id, document=document)
    visitor = await start_visitor(http, site.id)
    conversation = await visitor.conversation()
    first = await ask(http, visitor.auth, conversation, "When does the shop open?")
    again = await ask(http, visitor.auth, conversation, "when does the shop OPEN")
    assert "nine" in first["text"] and again["meta"]["cached"] is True

    # Refused origins: a widget call, a CORS preflight, a WebSocket handshake (below).
    refused = await http.post(
        "/api/widget/v1/sessions", json={"site_id": site.id}, headers={"Origin": EVIL}
    )
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    preflight = await http.options(
        "/api/widget/v1/sessions",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403

    # A rate limit: one message a minute for this site's visitors.
    strict = await make_site(
        services, name="Strict", limits={"visitor_messages": "1/minute", "visitor_burst": 1}
    )
    limited = await start_visitor(http, strict.id)
    limited_conversation = await limited.conversation()
    assert (await limited.send(limited_conversation, "one")).status_code == 202
    assert (await limited.send(limited_conversation, "two")).status_code == 429

    # An upstream: one answer with usage, then a failure that opens its breaker (threshold 1).
    upstream = OpenAIFake(api_key="sk-test", model="gpt-4o-mini")
    async with FakeServer(upstream) as base_url:
        responder = {
            "kind": "openai",
            "base_url": f"{base_url}/v1",
            "api_key": "sk-test",
            "model": "gpt-4o-mini",
            "retries": 0,
            "fallback": {"kind": "knowledge", "no_answer": "Fallback."},
        }
        upstream_site = await make_site(
            services, name="Upstream", responder=responder, options={"answer_cache": False}
        )
        chatter = await start_visitor(http, upstream_site.id)
        chat = await chatter.conversation()
        assert (await ask(http, chatter.auth, chat, "hello"))["text"].startswith("Echo: hello")
        upstream.mode = "error"
        assert (await ask(http, chatter.auth, chat, "again"))["text"] == "Fallback."

    # Widget analytics and an error report; a webhook for the analytics, delivered.
    receiver = WebhookReceiver()
    async with services.db.session_scope() as session:
        key = (await do_create_api_key(session, scopes=["admin", "read"])).key
    async with FakeServer(receiver) as hook_url:
        created = await http.post(
            "/api/v1/webhooks",
            json={"url": f"{hook_url}/hook", "events": ["widget.opened"], "site_id": site.id},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert created.status_code == 201, created.text
        reported = await http.post(
            "/api/widget/v1/events",
            headers=visitor.auth,
            json={
                "events": [
                    {"type": "widget.opened", "data": {}},
                    {"type": "message.sent", "data": {"ack_ms": 12}},
                    {"type": "error.reported", "data": {"message": "x is undefined"}},
                ]
            },
        )
        assert reported.status_code == 202, reported.text
        await drain(services)
        assert len(receiver.received) == 1

    # An unexpected exception in a route.
    assert (await http.get("/test/boom")).status_code == 500

    # WebSockets on a real server: a visitor connects, pings, hangs up; a foreign page is refused.
    async with serving(metrics_app, services.settings) as address:
        socket = await chat_socket(address, visitor.access_token)
        await socket.send({"type": "ping"})
        assert (await socket.recv())["type"] == "pong"
        await socket.close()
        foreign = await open_socket(address, origin=EVIL)
        assert await foreign.closed_with() == 4403
        for _ in range(100):  # the server finishes its side of the closes on its own time
            during = await scrape(http)
            if during.value("frontdesk_websocket_connections", endpoint="/ws/chat") == 0:
                break
            await asyncio.sleep(0.05)

    await services.turns.drain()  # the limited site's answer runs after its 202
    after = await scrape(http)
    promtool_check(after.text)
    missing = FAMILIES - {name for name, family in after.families.items() if family.samples}
    assert not missing, missing

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    # Route labels are templates, never paths with ids in them.
    routes = after.labels("frontdesk_http_requests_total", "route")
    assert MESSAGES_ROUTE in routes and "/test/boom" in routes
    assert not any(conversation in route for route in routes)
    assert moved("frontdesk_http_requests_total", route=MESSAGES_ROUTE, status="200") == 4
    assert moved("frontdesk_http_requests_total", route=MESSAGES_ROUTE, status="202") == 1
    assert moved("frontdesk_http_requests_total", route=MESSAGES_ROUTE, status="429") == 1
    assert moved("frontdesk_http_request_duration_seconds_count", route=MESSAGES_ROUTE) == 6
    assert moved("frontdesk_http_requests_total", route="unmatched", method="OPTIONS") == 1
    assert moved("frontdesk_server_errors_total", surface="http") == 1
    assert moved("frontdesk_http_requests_total", route="/test/boom", status="500") == 1

    assert moved("frontdesk_answer_cache_lookups_total", result="miss") == 2  # + the limited site
    assert moved("frontdesk_answer_cache_lookups_total", result="hit") == 1
    assert moved("frontdesk_answers_total", outcome="cached") == 1
    assert moved("frontdesk_answers_total") == 5  # 2 knowledge, 1 limited site, 2 upstream
    assert moved("frontdesk_answer_duration_seconds_count") == 5
    assert moved("frontdesk_responder_requests_total", responder="knowledge") == 3
    assert moved("frontdesk_responder_requests_total", responder="openai", outcome="answered") == 1
    assert moved("frontdesk_responder_requests_total", responder="openai", outcome="failed") == 1
    assert moved("frontdesk_responder_errors_total", responder="openai", kind="server_error") == 1
    assert moved("frontdesk_responder_first_token_seconds_count", responder="openai") == 1
    assert moved("frontdesk_responder_tokens_total", responder="openai", type="completion") > 0
    upstream_name = f"openai:{base_url.removeprefix('http://').split(':')[0]}"
    assert after.value("frontdesk_responder_circuit_state", upstream=upstream_name) == 2
    assert moved("frontdesk_responder_circuit_opened_total", upstream=upstream_name) == 1

    assert moved("frontdesk_origin_rejections_total", check="site") == 1
    assert moved("frontdesk_origin_rejections_total", check="preflight") == 1
    assert moved("frontdesk_origin_rejections_total", check="handshake") == 1
    assert moved("frontdesk_rate_limit_rejections_total", policy="visitor_messages") == 1

    assert moved("frontdesk_widget_events_total", type="widget.opened") == 1
    assert moved("frontdesk_widget_events_total", type="widget.event") == 1
    assert moved("frontdesk_widget_events_total", type="error.reported") == 1
    assert moved("frontdesk_webhook_attempts_total", outcome="success") == 1
    assert moved("frontdesk_webhook_deliveries_total", result="succeeded") == 1
    assert moved("frontdesk_webhook_attempt_duration_seconds_count") == 1

    ws = {"endpoint": "/ws/chat"}
    assert moved("frontdesk_websocket_connections_opened_total", **ws) == 2
    assert after.value("frontdesk_websocket_connections", **ws) == 0
    assert moved("frontdesk_websocket_frames_received_total", **ws) == 2  # auth, ping
    assert moved("frontdesk_websocket_frames_sent_total", **ws) == 2  # ready, pong
    assert moved("frontdesk_websocket_closes_total", code="1000", by="client", **ws) == 1
    assert moved("frontdesk_websocket_closes_total", code="4403", by="server", **ws) == 1

    from frontdesk import __version__

    assert after.value("frontdesk_build_info", version=__version__) == 1
    kinds = after.labels("frontdesk_job_queue_jobs", "kind")
    assert "webhook.deliver" in kinds  # reported at zero even when the queue is empty
    # The /ready checks (no worker check: this app runs none).
    assert after.labels("frontdesk_ready", "check") == {"database", "migrations", "broker"}
    assert after.value("frontdesk_ready") == 3


async def test_job_queue_depth_and_age_are_read_at_scrape_time(
    http: httpx.AsyncClient, metrics_app: FastAPI
) -> None:
    services: Services = metrics_app.state.services
    now = utcnow()
    async with services.db.session_scope() as session:
        enqueue(
            session, "webhook.deliver", {"delivery_id": "x"}, run_at=now - timedelta(seconds=90)
        )
        enqueue(session, "webhook.deliver", {"delivery_id": "y"}, run_at=now - timedelta(seconds=5))
        enqueue(session, "webhook.deliver", {"delivery_id": "z"}, run_at=now + timedelta(hours=1))
    result = await scrape(http)
    pending = {"state": "pending", "kind": "webhook.deliver"}
    assert result.value("frontdesk_job_queue_jobs", **pending) == 3
    age = result.value("frontdesk_job_queue_oldest_age_seconds", **pending)
    assert 90 <= age < 150  # the oldest due job; the one due in an hour does not count
    running = {"state": "running", "kind": "webhook.deliver"}
    assert result.value("frontdesk_job_queue_jobs", **running) == 0
    assert result.value("frontdesk_job_queue_oldest_age_seconds", **running) == 0
    promtool_check(result.text)


async def test_the_token_guards_metrics_when_configured(settings: Settings) -> None:
    token = "metrics-" + "t" * 24
    application = create_app(settings.model_copy(update={"metrics_token": SecretStr(token)}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
                refused = await client.get("/metrics", headers=headers)
                assert refused.status_code == 401
                assert refused.json()["error"]["code"] == "unauthorized"
                assert refused.headers["www-authenticate"] == "Bearer"
            allowed = await scrape(client, Authorization=f"Bearer {token}")
            assert "frontdesk_build_info" in allowed.families


async def test_metrics_are_open_without_a_token(client: httpx.AsyncClient) -> None:
    result = await scrape(client)
    promtool_check(result.text)


def _get(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.server
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_two_processes_report_together_in_multiprocess_mode(
    database_url: str | None, tmp_path: Path
) -> None:
    """Two `frontdesk serve` processes share a PROMETHEUS_MULTIPROC_DIR: either one's /metrics
    counts both, a live gauge follows the connections of both, and a killed process's
    connections stop counting while its counters stay."""
    multiproc = tmp_path / "prometheus"
    env = base_env(tmp_path / "data", database_url, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    first = start_server(env)
    second = start_server(env)
    try:
        for _ in range(3):
            await asyncio.to_thread(_get, f"{first.url}/ready")
        for _ in range(4):
            await asyncio.to_thread(_get, f"{second.url}/ready")
        # An open (not yet authenticated) chat connection on the second process.
        connection = await connect(f"ws://{second.host}/ws/chat", open_timeout=5)
        try:
            for _ in range(100):
                seen = Scrape(await asyncio.to_thread(_get, f"{first.url}/metrics"))
                if seen.value("frontdesk_websocket_connections", endpoint="/ws/chat") == 1:
                    break
                await asyncio.sleep(0.05)
            assert seen.value("frontdesk_http_requests_total", route="/ready") == 7
            assert seen.value("frontdesk_websocket_connections", endpoint="/ws/chat") == 1
            assert len(seen.labels("frontdesk_build_info", "version")) == 1
            promtool_check(seen.text)

            second.process.send_signal(signal.SIGKILL)
            second.process.wait(timeout=10)
        finally:
            await connection.close()
        left = Scrape(await asyncio.to_thread(_get, f"{first.url}/metrics"))
        assert left.value("frontdesk_websocket_connections", endpoint="/ws/chat") == 0
        assert left.value("frontdesk_http_requests_total", route="/ready") == 7
        assert left.value("frontdesk_build_info") == 1
    finally:
        first.stop()
        second.stop()
    # A process that stops cleanly removes its live gauges itself; its counters stay.
    assert list(multiproc.glob(f"counter_{first.process.pid}.db"))
    assert not list(multiproc.glob(f"gauge_live*_{first.process.pid}.db"))

"""Traces and errors leave a real `frontdesk` process for real HTTP endpoints on loopback: an OTLP
collector (the protobuf bodies decoded with opentelemetry-proto) and a Sentry envelope endpoint."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.processes import Server, base_env, cli, free_port, start_server

pytestmark = pytest.mark.server
ORIGIN = "https://shop.example"
MESSAGES_ROUTE = "POST /api/widget/v1/conversations/{conversation_id}/messages"


class Receiver:
    """An HTTP endpoint that keeps every POST (path, headers, decoded body) and answers 200."""

    def __init__(self, reply: bytes = b"") -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br":
                    body = brotli.decompress(body)
                received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, found: Callable[[], bool], timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if found():
                return
            time.sleep(0.1)
        pytest.fail(f"not received in time; got {len(self.posts)} posts")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Receiver]:
    receiver = Receiver(ExportTraceServiceResponse().SerializeToString())
    yield receiver
    receiver.close()


@pytest.fixture
def sentry() -> Iterator[Receiver]:
    receiver = Receiver(b"{}")
    yield receiver
    receiver.close()


def create_site(env: dict[str, str]) -> str:
    assert cli(env, "migrate").returncode == 0
    created = cli(env, "site", "create", "--name", "Shop", "--origin", ORIGIN, "--json")
    assert created.returncode == 0, created.stderr
    return str(json.loads(created.stdout)["site_id"])


def chat(http: httpx.Client, site_id: str, text: str) -> dict[str, str]:
    session = http.post("/api/widget/v1/sessions", json={"site_id": site_id})
    assert session.status_code == 201, session.text
    auth = {"Authorization": f"Bearer {session.json()['access_token']}"}
    conversation = http.post("/api/widget/v1/conversations", headers=auth).json()
    answered = http.post(
        f"/api/widget/v1/conversations/{conversation['id']}/messages",
        headers={**auth, "Accept": "text/event-stream"},
        json={"client_id": "c-1", "text": text},
    )
    assert "message_end" in answered.text
    return auth


def exported_spans(collector: Receiver) -> tuple[list[Span], set[str]]:
    spans: list[Span] = []
    services: set[str] = set()
    for path, headers, body in collector.posts:
        assert path == "/v1/traces"
        assert headers["content-type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    return spans, services


def test_spans_are_exported_over_otlp_http(tmp_path: Path, collector: Receiver) -> None:
    env = base_env(
        tmp_path,
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    site_id = create_site(env)
    server = start_server(env)
    try:
        with httpx.Client(base_url=server.url, headers={"Origin": ORIGIN}, timeout=10) as http:
            chat(http, site_id, "How can I return an item?")

        def names() -> set[str]:
            return {span.name for span in exported_spans(collector)[0]}

        collector.wait_for(lambda: {"responder.attempt", "chat.turn"} <= names())
    finally:
        server.stop()
    spans, services = exported_spans(collector)
    assert services == {"frontdesk"}
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (request,) = by_name[MESSAGES_ROUTE]
    (turn,) = by_name["chat.turn"]
    (attempt,) = by_name["responder.attempt"]
    assert request.kind == Span.SPAN_KIND_SERVER
    assert turn.parent_span_id == request.span_id and turn.trace_id == request.trace_id
    assert attempt.parent_span_id == turn.span_id
    attributes = {a.key: a.value for a in attempt.attributes}
    assert attributes["frontdesk.responder.kind"].string_value == "knowledge"
    assert attributes["frontdesk.responder.outcome"].string_value == "ok"
    sql = [s for s in spans if any(a.key == "db.system" for a in s.attributes)]
    assert any(s.trace_id == request.trace_id for s in sql)
    # A trace begins at a request or one of our spans, never at background SQL.
    roots = [s for s in spans if not s.parent_span_id]
    assert roots and all(s.kind != Span.SPAN_KIND_CLIENT for s in roots)
    assert not [s for s in spans if s.name in ("GET /health",)]


APP_WITH_A_BUG = """
import asyncio, sys

import uvicorn

from frontdesk.config import load_settings
from frontdesk.logs import configure_logging
from frontdesk.main import create_app
from frontdesk.server import uvicorn_config

settings = load_settings()
configure_logging(settings.log_level)
app = create_app(settings)


async def checkout(order: int) -> None:
    raise RuntimeError(f"checkout exploded for order {order}")


app.add_api_route("/test/checkout/{order}", checkout)
uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=int(sys.argv[1]))).run()
"""


def envelope_items(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The items of a Sentry envelope: a header line, then (item header, payload) pairs."""
    _, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, payload))
    return items


def sentry_events(sentry: Receiver) -> list[dict[str, Any]]:
    events = []
    for path, _, body in sentry.posts:
        assert path == "/api/1/envelope/"
        for header, payload in envelope_items(body):
            if header.get("type") == "event":
                events.append(json.loads(payload))
    return events


def start_script(env: dict[str, str], script: Path) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the app exited during start-up"
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    pytest.fail("the app did not start")


def test_errors_reach_sentry_scrubbed(tmp_path: Path, sentry: Receiver) -> None:
    env = base_env(tmp_path, None, SENTRY_DSN=f"http://public@127.0.0.1:{sentry.port}/1")
    site_id = create_site(env)
    script = tmp_path / "app_with_a_bug.py"
    script.write_text(APP_WITH_A_BUG)
    server = start_script(env, script)
    token = "fd_" + "Q" * 40
    try:
        failed = httpx.get(
            f"{server.url}/test/checkout/4411",
            headers={"Authorization": f"Bearer {token}", "Cookie": "fd_session=cookie-123456"},
            timeout=10,
        )
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "internal_error"
        # (uvicorn closes a connection whose request raised: the rest goes on a new one)
        with httpx.Client(base_url=server.url, headers={"Origin": ORIGIN}, timeout=10) as http:
            auth = chat(http, site_id, "hello")
            reported = http.post(
                "/api/widget/v1/events",
                headers=auth,
                json={
                    "events": [
                        {
                            "type": "error.reported",
                            "data": {
                                "message": "Cannot read properties of undefined (reading 'seq')",
                                "stack": "TypeError: x\n    at applyFrame (https://a.example/f.js:1:2)",
                                "access_token": token,
                            },
                        }
                    ]
                },
            )
            assert reported.status_code == 202

        def kinds() -> set[str]:
            found = set()
            for event in sentry_events(sentry):
                found.add(event.get("tags", {}).get("frontdesk.source", "server"))
            return found

        sentry.wait_for(lambda: {"server", "widget"} <= kinds())
    finally:
        server.stop()

    for _, _, body in sentry.posts:
        assert token.encode() not in body and b"cookie-123456" not in body
    events = sentry_events(sentry)
    (server_error,) = [
        e
        for e in events
        if any(
            value.get("type") == "RuntimeError"
            for value in e.get("exception", {}).get("values", [])
        )
    ]
    (exception,) = server_error["exception"]["values"]
    assert exception["value"] == "checkout exploded for order 4411"
    assert server_error["tags"]["frontdesk.error_group"].startswith("err_")
    headers = {k.lower(): v for k, v in server_error["request"].get("headers", {}).items()}
    assert headers.get("authorization") in (None, "[redacted]")
    assert headers.get("cookie") in (None, "[redacted]")
    assert "vars" not in json.dumps(exception["stacktrace"])

    (widget,) = [e for e in events if e.get("tags", {}).get("frontdesk.source") == "widget"]
    assert widget["message"] == "Cannot read properties of undefined (reading 'seq')"
    assert widget["fingerprint"][0] == "widget" and len(widget["fingerprint"][1]) == 64
    assert widget["tags"]["frontdesk.site_id"] == site_id
    assert widget["tags"]["frontdesk.error_group"].startswith("err_")

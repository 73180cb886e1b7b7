"""Property-based fuzzing of the HTTP API with schemathesis, driven by the served OpenAPI schema.

The app runs for real (uvicorn on a free loopback port, SQLite in a temporary data dir) and
schemathesis generates requests for every operation in `/api/v1/openapi.json`, valid ones
(positive mode) and invalid ones (negative mode). Each response must not be a server error and
must match the schema where the status code is documented.

Why a live server in a thread instead of schemathesis's in-process ASGI transport: that transport
starts the app's lifespan on its own event loop and keeps it until interpreter exit, so the app's
services (database pool, broker, background answer turns) would outlive the test. Here the test
owns the whole lifecycle (start, fuzz, shut down) and the requests cross the same HTTP stack as in
production. Why plain hypothesis `@given` loops instead of `schema.parametrize()`: one test that
counts every generated case across all operations can assert the CI minimum (2,000 cases) and
report every failing operation at once, and it runs unchanged under the suite's pytest settings
(asyncio auto mode, warnings as errors).

`FRONTDESK_FUZZ_EXAMPLES` is hypothesis's `max_examples` for each (operation, generation mode)
pair; `make fuzz` raises it for a longer pass. Operations with few possible inputs (no parameters,
no body) stop early once hypothesis has exhausted them, so the total is less than
operations x modes x examples.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.config import ChecksConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
)

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.config import Settings, load_settings
from frontdesk.db import Database
from frontdesk.main import create_app
from frontdesk.migrate import upgrade
from frontdesk.security import limits_policy

# 80 per (operation, mode) gives about 2,700 cases on the current schema (28 operations), in about
# a minute on a 2-core machine.
DEFAULT_EXAMPLES = 80
EXAMPLES = int(os.environ.get("FRONTDESK_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
# The acceptance bar for CI; a quick local run with fewer examples only checks for failures.
MIN_TOTAL_CASES = 2_000 if EXAMPLES >= DEFAULT_EXAMPLES else 0

FuzzCase = Case[APIOperation[Any, Any, Any, Any]]
ORIGIN = "https://shop.example"
SCHEMA_PATH = "/api/v1/openapi.json"
WIDGET_PREFIX = "/api/widget/v1/"
API_PREFIX = "/api/v1/"

# What every response is held to, and why these and not the other built-in checks:
# - not_a_server_error: no input, valid or not, may produce a 5xx.
# - response_schema_conformance / content_type_conformance / response_headers_conformance:
#   a documented status code must come with the documented body, media type and headers.
# - negative_data_rejection: a request that violates the schema must be refused with a 4xx.
# Not used:
# - status_code_conformance: the schema documents only success and 422 responses, while every
#   route also answers 401/403/404 (auth, unknown ids) and the body limit 413, by design; each of
#   those would be reported. The error envelope's contract is tested in the integration tests.
# - positive_data_acceptance: schema-valid requests are still refused when they name ids that do
#   not exist or lack a permission (the fuzzing key has no `owner` scope), which is correct.
# - max_response_time: timing on a shared 2-core CI machine is noise, not a contract.
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
    negative_data_rejection,
]

# Hypothesis health checks that fire on API fuzzing without meaning anything: each example is an
# HTTP round trip (too_slow), schema-driven strategies reject many draws (filter_too_much) and
# build large bodies (data_too_large, large_base_example).
NOISY_HEALTH_CHECKS = [
    HealthCheck.too_slow,
    HealthCheck.filter_too_much,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]

# A request the schema forbids must be refused with a 4xx. schemathesis's default list of refusals
# lacks 413, which is how the body limit refuses an oversized body before it is parsed.
# Event streams (GET .../stream) stay open for as long as the client listens: read the first
# event (`joined`) and hang up, instead of listening until the request timeout.
_REFUSALS = ChecksConfig().negative_data_rejection.expected_statuses
SCHEMATHESIS_CONFIG = schemathesis.Config.from_dict(
    {
        "max-stream-events": 1,
        "checks": {"negative_data_rejection": {"expected-statuses": [*_REFUSALS, "413"]}},
    }
)

HYPOTHESIS_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same cases on every run, so a CI failure reproduces locally
    database=None,  # no .hypothesis/ directory in the work tree; derandomize replays anyway
    deadline=None,  # latency is not what is tested, and shared CI machines are slow
    suppress_health_check=NOISY_HEALTH_CHECKS,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    report_multiple_bugs=False,  # one minimal failing request per operation and mode is enough
    print_blob=False,
)


async def _prepare_database(settings_: Settings) -> str:
    """Migrate the empty database and create the admin API key the fuzzer uses for /api/v1."""
    db = Database(settings_)
    try:
        await upgrade(db)
        async with db.session_scope() as session:
            created = await do_create_api_key(
                session, scopes=["admin", "write", "read", "events"], name="fuzz"
            )
    finally:
        await db.dispose()
    return created.key


def _run_async(factory: Callable[[], Any]) -> Any:
    """Run a coroutine to completion in a fresh thread: the main thread's event loop belongs to
    pytest-asyncio, and `asyncio.run` there would unset it."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(factory())
        except BaseException as exc:  # re-raised in the caller
            result["error"] = exc

    thread = threading.Thread(target=target, name="fuzz-setup")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


class LiveServer:
    """uvicorn serving the app on a free loopback port in a background thread."""

    def __init__(self, settings_: Settings, sock: socket.socket) -> None:
        self.sock = sock
        config = uvicorn.Config(
            create_app(settings_),
            lifespan="on",
            log_config=None,  # leave logging alone: pytest captures it
            log_level="warning",
            access_log=False,
            loop="asyncio",
            ws="none",
            proxy_headers=False,
            timeout_graceful_shutdown=5,  # event streams the fuzzer hung up on end with the server
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="fuzz-server"
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the captured log)")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive(), "the server did not stop"


@dataclass
class World:
    """The state the fuzzer runs against: ids that exist, and credentials that work.

    Positive cases name these ids half of the time (drawn by hypothesis, so it stays
    reproducible); otherwise every path parameter is random and most requests stop at a 404.
    """

    base_url: str
    http: requests.Session
    api_key: str
    token_ttl_s: int
    # The widget's site: origin https://shop.example; /api/v1/sites/{site_id} never targets it, so
    # fuzzed changes (origins, options such as require_identity) cannot lock the widget calls out.
    site_id: str = ""
    scratch_site_id: str = ""  # GET, PATCH and POST .../secret of /api/v1/sites/{site_id}
    doomed_site_id: str = ""  # DELETE /api/v1/sites/{site_id}: deleted once, then 404
    doomed_key_id: str = ""  # DELETE /api/v1/api-keys/{key_id}; never the fuzzer's own key
    document_id: str = ""
    ingestion_id: str = ""
    visitor_id: str = ""
    access_token: str = ""
    token_issued_at: float = 0.0
    conversation_id: str = ""
    # A second visitor's refresh token, rotated by the fuzzed refresh calls that use it.
    refresh_token: str = ""
    cases: dict[str, int] = field(default_factory=dict)

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        # A connection of its own: uvicorn closes a keep-alive connection after a 500, and the
        # fuzzer's session may be holding one.
        response = requests.post(self.base_url + path, json=body, headers=headers, timeout=30)
        assert response.status_code in (200, 201, 202), (path, response.status_code, response.text)
        result: dict[str, Any] = response.json()
        return result

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def new_visitor(self, visitor_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"site_id": self.site_id}
        if visitor_id:
            body["visitor_id"] = visitor_id
        return self.post("/api/widget/v1/sessions", body, {"Origin": ORIGIN})

    def widget_headers(self) -> dict[str, str]:
        if time.monotonic() - self.token_issued_at > self.token_ttl_s / 2:
            # A long `make fuzz` pass outlives an access token: continue the same anonymous
            # visitor (so the conversation stays theirs) with a fresh one.
            issued = self.new_visitor(self.visitor_id)
            assert issued["visitor_id"] == self.visitor_id
            self.access_token = issued["access_token"]
            self.token_issued_at = time.monotonic()
        return {"Authorization": f"Bearer {self.access_token}", "Origin": ORIGIN}

    def setup(self) -> None:
        def site(name: str) -> str:
            body = {"name": name, "allowed_origins": [ORIGIN]}
            return str(self.post("/api/v1/sites", body, self.api_headers)["id"])

        self.site_id = site("Shop")
        self.scratch_site_id = site("Scratch")
        self.doomed_site_id = site("Doomed")
        key = {"scopes": ["read"], "name": "doomed"}
        self.doomed_key_id = str(self.post("/api/v1/api-keys", key, self.api_headers)["id"])
        document = {
            "site_id": self.site_id,
            "title": "Shipping",
            "text": "# Shipping\n\nOrders ship within two business days. Returns are free.",
        }
        ingestion = self.post("/api/v1/knowledge", document, self.api_headers)
        self.ingestion_id = str(ingestion["id"])
        deadline = time.monotonic() + 60
        while ingestion["status"] in ("queued", "running"):  # indexed by the worker
            assert time.monotonic() < deadline, ingestion
            time.sleep(0.05)
            url = f"{self.base_url}/api/v1/knowledge/ingestions/{self.ingestion_id}"
            ingestion = requests.get(url, headers=self.api_headers, timeout=30).json()
        self.document_id = str(ingestion["document_id"])
        issued = self.new_visitor()
        self.visitor_id = issued["visitor_id"]
        self.access_token = issued["access_token"]
        self.token_issued_at = time.monotonic()
        conversation = self.post("/api/widget/v1/conversations", {}, self.widget_headers())
        self.conversation_id = str(conversation["id"])
        self.refresh_token = self.new_visitor()["refresh_token"]

    def headers_for(self, case: FuzzCase) -> dict[str, str]:
        path = case.operation.path
        if path.startswith(WIDGET_PREFIX):
            return self.widget_headers()
        if path.startswith(API_PREFIX):
            return self.api_headers
        return {}  # /health and /ready are public

    def use_known_ids(self, case: FuzzCase) -> None:
        """Point a positive case at resources that exist (see the fields above)."""
        method = case.operation.method.upper()
        known = {
            "conversation_id": self.conversation_id,
            "site_id": self.doomed_site_id if method == "DELETE" else self.scratch_site_id,
            "key_id": self.doomed_key_id,
            "document_id": self.document_id,
            "ingestion_id": self.ingestion_id,
        }
        for name in case.path_parameters or {}:
            if name in known:
                case.path_parameters[name] = known[name]
        if case.query and "site_id" in case.query:
            case.query["site_id"] = self.site_id
        if isinstance(case.body, dict):
            replacements = {
                "site_id": self.site_id,
                "visitor_id": self.visitor_id,
                "refresh_token": self.refresh_token,
            }
            for name, value in replacements.items():
                if name in case.body:
                    case.body[name] = value

    def after_call(self, case: FuzzCase, response: Response) -> None:
        sent = case.body.get("refresh_token") if isinstance(case.body, dict) else None
        if case.operation.path.endswith("/sessions/refresh") and sent == self.refresh_token:
            if response.status_code == 200:
                self.refresh_token = response.json()["refresh_token"]
            else:  # keep a usable token whatever the fuzzer did to this one
                self.refresh_token = self.new_visitor()["refresh_token"]


def _app_traceback(exc: BaseException) -> str:
    """The traceback's frames in FrontDesk's own code, and the exception."""
    frames = [
        f"  {frame.filename.split('/frontdesk/', 1)[-1]}:{frame.lineno} in {frame.name}\n"
        f"    {frame.line}"
        for frame in traceback.extract_tb(exc.__traceback__)
        if "/site-packages/" not in frame.filename
    ]
    return "\n".join([*frames, *traceback.format_exception_only(exc)]).rstrip()


class ErrorLog(logging.Handler):
    """Collects the errors the server logs: tracebacks of 500s and of background tasks."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []
        self.explained: set[int] = set()  # indexes of records shown with a failing request
        self._seen: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            # A 500 is logged twice, by the app's handler and by uvicorn: keep the first.
            if any(exc is seen for seen in self._seen):
                return
            self._seen.append(exc)
        text = f"[{record.name}] {record.getMessage()}"
        self.records.append(f"{text}\n{_app_traceback(exc)}" if exc is not None else text)

    def explain(self, start: int) -> str:
        """The records logged since `start`, now reported with the request that caused them."""
        self.explained.update(range(start, len(self.records)))
        return "\n".join(self.records[start:])

    def unexplained(self) -> list[str]:
        """Errors logged outside any failing request, e.g. by a background answer turn."""
        return sorted({r for i, r in enumerate(self.records) if i not in self.explained})


@contextmanager
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("frontdesk", "uvicorn.error", "asyncio")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def fuzz_operation(
    world: World,
    errors: ErrorLog,
    case_strategy: st.SearchStrategy[FuzzCase],
    positive: bool,
) -> None:
    """Run one operation in one generation mode; raise the minimal failing case, if any."""

    @HYPOTHESIS_SETTINGS
    @given(case=case_strategy, use_known=st.booleans())
    def run(case: FuzzCase, use_known: bool) -> None:
        if positive and use_known:
            world.use_known_ids(case)
        headers = world.headers_for(case)
        label = case.operation.label
        world.cases[label] = world.cases.get(label, 0) + 1
        logged = len(errors.records)
        response = case.call(
            base_url=world.base_url, session=world.http, headers=headers, timeout=30
        )
        world.after_call(case, response)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as exc:
            # Re-raised as an AssertionError, which hypothesis shrinks and reports, with the
            # server's own traceback when it logged one.
            server_side = errors.explain(logged)
            raise AssertionError(
                f"{exc.message}\n{server_side or '(nothing logged by the server)'}"
            ) from None

    run()


def _report(text: str, width: int = 400) -> str:
    """Long lines (a 100 kB body in a curl command) cut to `width` characters."""
    return "\n".join(
        line if len(line) <= width else f"{line[:width]}... ({len(line)} characters)"
        for line in text.splitlines()
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse any connection or name lookup beyond this machine while fuzzing. Fuzzed site
    settings include responder URLs (OpenAI-compatible, Dify); those sites never get visitor
    messages here, but should that change, the answer fails (and is reported) instead of a
    request leaving the machine."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def refuse(target: object) -> OSError:
        return OSError(f"the fuzz test allows loopback connections only, not {target!r}")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_loopback(str(name)):
            raise refuse(name)
        return real_getaddrinfo(host, *args, **kwargs)

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(str(address[0])):
            raise refuse(address)

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate limits as large as they go. The fuzzer is one client on one IP with one visitor, one
    API key and a few thousand requests a minute; with the real limits most calls after the first
    burst would stop at 429 before reaching the code under test. The limits themselves are tested
    in tests/security/test_rate_limits.py; here the limiter still runs on every call."""
    for name, rate in list(limits_policy.DEFAULTS.items()):
        huge = dataclasses.replace(rate, per_s=1_000_000.0, burst=1_000_000_000)
        monkeypatch.setitem(limits_policy.DEFAULTS, name, huge)


@pytest.mark.fuzz
@pytest.mark.timeout(max(600, EXAMPLES * 6))
@pytest.mark.usefixtures("unlimited", "loopback_only")
def test_openapi_fuzz(tmp_path: Path) -> None:
    started = time.monotonic()
    # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings_ = load_settings(
        data_dir=tmp_path,
        public_url=base_url,
        secret_key="fuzz-secret-key-" + "x" * 32,
        access_token_ttl_s=900,
    )
    api_key: str = _run_async(lambda: _prepare_database(settings_))

    failures: list[str] = []
    seconds: dict[str, float] = {}
    with error_log() as errors, LiveServer(settings_, sock), requests.Session() as http:
        world = World(base_url, http, api_key, settings_.access_token_ttl_s)
        world.setup()
        # The schema as served, not as built in-process: that endpoint is part of the contract.
        schema = schemathesis.openapi.from_url(base_url + SCHEMA_PATH, config=SCHEMATHESIS_CONFIG)
        results = list(schema.get_all_operations())
        broken = [str(r) for r in results if not isinstance(r, Ok)]
        assert not broken, broken  # an operation schemathesis cannot read is not fuzzed
        operations = [r.ok() for r in results if isinstance(r, Ok)]
        assert len(operations) >= 20, [op.label for op in operations]
        for operation in operations:
            operation_started = time.monotonic()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode)
                try:
                    fuzz_operation(world, errors, strategy, mode is GenerationMode.POSITIVE)
                except Unsatisfiable:
                    # Nothing to negate: no parameters and no body (e.g. GET /health).
                    assert mode is GenerationMode.NEGATIVE, operation.label
                except Exception as exc:
                    failures.append(f"== {operation.label} ({mode.value})\n{exc}")
            seconds[operation.label] = time.monotonic() - operation_started
        background = errors.unexplained()

    total = sum(world.cases.values())
    elapsed = time.monotonic() - started
    summary = "\n".join(
        f"  {world.cases.get(label, 0):5d} {seconds[label]:5.1f}s  {label}"
        for label in sorted(seconds)
    )
    print(f"\nfuzzed {total} cases in {elapsed:.0f}s ({EXAMPLES} examples)\n{summary}")
    report = "\n\n".join(failures)
    if background:
        report += "\n\n== errors the server logged outside a failing request\n"
        report += "\n".join(background)
    assert not failures and not background, _report(report)
    assert total >= MIN_TOTAL_CASES, f"only {total} cases were generated\n{summary}"

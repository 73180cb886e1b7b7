"""Shared plumbing of the upstream fakes: a real loopback HTTP server and the fault knobs.

`FakeServer(app)` runs an ASGI app with uvicorn on 127.0.0.1 (a free port) inside the running
event loop; `ThreadedFakeServer(app)` runs the same in a background thread with its own loop, for
synchronous callers such as benchmark scripts::

    async with FakeServer(fake) as base_url: ...      # "http://127.0.0.1:<port>"
    with ThreadedFakeServer(fake) as base_url: ...

`FakeUpstream` is the base of both fakes. It is the ASGI app (raw ASGI, so faults are exact), it
records every request, and it turns its knobs (the `Knobs` fields, plain attributes that may be
changed between requests) and its script of per-request overrides (`enqueue`) into behaviour:
latency, hang, HTTP 500 / 429, malformed SSE, mid-stream stall, in-stream error, and an abrupt
connection drop (uvicorn's transport, reached through the ASGI `send` callable, is closed without
finishing the chunked body; if that internal ever moves, an exception makes uvicorn close it).

Answers are deterministic: "Echo: <prompt>" then filler words up to `answer_tokens` words; one word
is one token and one streamed piece (pieces after the first carry their leading space).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

Mode = Literal["ok", "error", "rate_limit", "hang", "malformed", "drop", "stall", "stream_error"]
"""ok; error: HTTP 500; rate_limit: HTTP 429 + Retry-After; hang: no response until the client
leaves; malformed: one `data: {not json` line after `after_tokens` tokens, then carry on; drop:
close the connection after `after_tokens` tokens; stall: go silent after `after_tokens` tokens
until the client leaves; stream_error: the protocol's in-stream error after `after_tokens` tokens.
Without streaming, the mid-stream modes become: malformed = a 200 with a broken JSON body, drop =
headers and half the body, stall = hang, stream_error = the protocol's HTTP error."""

MID_STREAM: frozenset[str] = frozenset({"malformed", "drop", "stall", "stream_error"})
FILLER = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()


class DropConnection(Exception):
    """Raised inside a fake to make uvicorn close the transport abruptly."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DropConnection))


@dataclass
class Knobs:
    """Behaviour of the next request; attributes of a fake, or overrides in its script."""

    mode: Mode = "ok"
    latency: float = 0.0  # seconds before the response headers
    first_token_latency: float = 0.0  # seconds from the headers to the first token
    token_rate: float = 0.0  # tokens per second after the first; 0 = as fast as possible
    answer_tokens: int = 12  # words per answer (the echo itself is never cut)
    after_tokens: int = 2  # tokens sent before malformed / drop / stall / stream_error
    retry_after: float = 1.0  # Retry-After (seconds) of mode "rate_limit"
    hang_seconds: float = 3600.0  # length of hang / stall; ended early by disconnect or shutdown


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names, without Authorization
    json: Any  # the parsed body; None when absent or not JSON
    authorized: bool = False
    status: int | None = None  # response status, once sent
    tokens_sent: int = 0
    # completed | disconnected (client left) | dropped | stopped (Dify) | shutdown | pending
    outcome: str = "pending"
    client_port: int | None = None  # the caller's port: the same one again = a reused connection


def answer_words(prompt: str, count: int) -> list[str]:
    words = ["Echo:", *prompt.split()]
    words += [FILLER[i % len(FILLER)] for i in range(max(0, count - len(words)))]
    return words


def pieces(words: list[str]) -> list[str]:
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Exchange:
    """One HTTP request and its response, in raw ASGI."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        self._receive, self._send = receive, send
        self.interrupted = asyncio.Event()  # disconnect, shutdown, or the fake's own reason
        self.disconnected = self.closing = self.started = self.complete = self.aborted = False
        self.status: int | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def read_body(self) -> bytes:
        body = b""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._gone(closing=False)
                return body
            body += bytes(message.get("body", b""))
            if not message.get("more_body"):
                return body

    def watch(self) -> None:
        """Notice the client leaving while the fake sleeps or streams."""

        async def watcher() -> None:
            while (await self._receive())["type"] != "http.disconnect":
                pass
            if not self.complete:
                self._gone(closing=False)

        self._watcher = asyncio.get_running_loop().create_task(watcher())

    def unwatch(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    def _gone(self, *, closing: bool) -> None:
        self.closing = self.closing or closing
        self.disconnected = self.disconnected or not closing
        self.interrupted.set()

    async def pause(self, seconds: float) -> bool:
        """Sleep; False (early) when interrupted."""
        if self.interrupted.is_set():
            return False
        if seconds <= 0:
            await asyncio.sleep(0)
            return not self.interrupted.is_set()
        try:
            await asyncio.wait_for(self.interrupted.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def start(
        self, status: int, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        raw = [(b"content-type", content_type.encode())]
        raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self.status, self.started = status, True
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def write(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self, data: bytes = b"") -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": False})
        self.complete = True

    async def json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = dumps(body)
        await self.start(
            status, "application/json", {**(headers or {}), "content-length": str(len(data))}
        )
        await self.finish(data)

    async def abort(self) -> None:
        """Close the connection now, mid-response or before it (no 500, no final chunk)."""
        self.aborted = True
        transport = getattr(getattr(self._send, "__self__", None), "transport", None)
        if transport is None:  # not uvicorn's cycle: let uvicorn close it on an exception
            raise DropConnection
        transport.close()
        for _ in range(3):  # let uvicorn notice the lost connection, so it stays quiet
            await asyncio.sleep(0)


@dataclass(eq=False)
class FakeUpstream(Knobs):
    """Base of the fakes: the ASGI app, the request log, the script and the fault engine."""

    knobs_type: ClassVar[type[Knobs]] = Knobs
    blocking_error_status: ClassVar[int] = 500  # what "stream_error" becomes without streaming
    api_key: str = "test-key"
    requests: list[RecordedRequest] = field(default_factory=list)
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    in_flight: int = 0
    peak_in_flight: int = 0
    _live: set[Exchange] = field(default_factory=set, repr=False)

    # --- the test-facing API -------------------------------------------------------------
    def enqueue(self, *steps: Mode | Mapping[str, Any]) -> FakeUpstream:
        """Script the next requests, one step each: a mode, or knob overrides.

        `fake.enqueue("error", "error")` fails the next two requests with HTTP 500; then the
        attributes apply again. `fake.enqueue({"mode": "drop", "after_tokens": 3})`.
        Only requests that reach the model (authorised and valid) take a step.
        """
        names = {f.name for f in fields(self.knobs_type)}
        for step in steps:
            overrides = {"mode": step} if isinstance(step, str) else dict(step)
            if unknown := set(overrides) - names:
                raise TypeError(f"unknown knobs: {sorted(unknown)}")
            self.queue.append(overrides)
        return self

    def reset(self) -> None:
        """Knobs back to their defaults; the log and the script emptied."""
        for f in fields(self.knobs_type):
            default = f.default_factory() if callable(f.default_factory) else f.default
            setattr(self, f.name, default)
        self.requests.clear()
        self.queue.clear()
        self.peak_in_flight = self.in_flight

    async def close(self) -> None:
        """End every request in flight (called by FakeServer before shutting down)."""
        for ex in list(self._live):
            ex._gone(closing=True)

    def serve(self) -> FakeServer:
        return FakeServer(self)

    def serve_in_thread(self) -> ThreadedFakeServer:
        return ThreadedFakeServer(self)

    # --- for the subclasses -------------------------------------------------------------
    async def handle(self, ex: Exchange, rec: RecordedRequest) -> None:
        raise NotImplementedError

    def error_body(self, status: int) -> Any:
        raise NotImplementedError

    def next_knobs(self) -> Any:
        current = self.knobs_type(
            **{f.name: getattr(self, f.name) for f in fields(self.knobs_type)}
        )
        return replace(current, **self.queue.popleft()) if self.queue else current

    async def idle(self, ex: Exchange, k: Any, seconds: float) -> bool:
        """Wait during a response; False when interrupted. Dify pings here."""
        return await ex.pause(seconds)

    async def before_headers(self, ex: Exchange, k: Knobs, *, streaming: bool) -> bool:
        """Latency and the faults answered before any token; True to go on."""
        if not await ex.pause(k.latency):
            return False
        if k.mode == "hang" or (k.mode == "stall" and not streaming):
            await ex.pause(k.hang_seconds)
            return False
        if k.mode == "error" or (k.mode == "stream_error" and not streaming):
            status = 500 if k.mode == "error" else self.blocking_error_status
            await ex.json(status, self.error_body(status))
            return False
        if k.mode == "rate_limit":
            after = f"{k.retry_after:g}"
            await ex.json(429, self.error_body(429), {"retry-after": after})
            return False
        return True

    async def run_tokens(
        self,
        ex: Exchange,
        rec: RecordedRequest,
        k: Knobs,
        parts: list[str],
        emit: Callable[[int, str], Awaitable[None]],
        stream_error: Callable[[], Awaitable[None]],
    ) -> bool:
        """Pace `parts` through `emit`, with the mid-stream fault; False when cut short."""
        loop = asyncio.get_running_loop()
        if not await self.idle(ex, k, k.first_token_latency):
            return False
        t0 = loop.time()
        fault_at = min(k.after_tokens, len(parts)) if k.mode in MID_STREAM else -1
        for i in range(len(parts) + 1):
            if i == fault_at:
                if k.mode == "malformed":
                    await ex.write(b"data: {not json\n\n")
                elif k.mode == "drop":
                    await ex.abort()
                    return False
                elif k.mode == "stall":
                    await self.idle(ex, k, k.hang_seconds)
                    return False
                else:
                    await stream_error()
                    return False
            if i == len(parts):
                return True
            if i > 0 and k.token_rate > 0:
                if not await self.idle(ex, k, t0 + i / k.token_rate - loop.time()):
                    return False
            elif not await ex.pause(0):
                return False
            await emit(i, parts[i])
            rec.tokens_sent += 1
        return True

    async def generation_time(self, ex: Exchange, k: Knobs, tokens: int) -> bool:
        """Blocking mode: wait as long as streaming the answer would take."""
        rate_time = (tokens - 1) / k.token_rate if k.token_rate > 0 and tokens > 1 else 0.0
        return await ex.pause(k.first_token_latency + rate_time)

    async def drop_body(self, ex: Exchange, body: bytes) -> None:
        """Non-streaming drop: headers and half the body, then the connection goes."""
        await ex.start(200, "application/json", {"content-length": str(len(body))})
        await ex.write(body[: len(body) // 2])
        await ex.abort()

    # --- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send)
        body = await ex.read_body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        headers = {k: v for k, v in ex.headers.items() if k != "authorization"}
        rec = RecordedRequest(ex.method, ex.path, headers, parsed)
        rec.client_port = (scope.get("client") or (None, None))[1]
        self.requests.append(rec)
        self._live.add(ex)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        ex.watch()
        try:
            await self.handle(ex, rec)
        except DropConnection:
            rec.outcome = "dropped"
            raise
        finally:
            ex.unwatch()
            self._live.discard(ex)
            self.in_flight -= 1
            rec.status = ex.status
        if not (ex.complete or ex.disconnected or ex.aborted):
            await ex.abort()  # shutting down mid-response: the connection goes
        if rec.outcome == "pending":
            if ex.complete:
                rec.outcome = "completed"
            elif ex.closing:
                rec.outcome = "shutdown"
            else:
                rec.outcome = "dropped" if ex.aborted else "disconnected"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # leave signals to the test runner
        yield


class FakeServer:
    """`async with FakeServer(app) as base_url:` - uvicorn on 127.0.0.1 in the running loop.
    With `tls=(certfile, keyfile)` it serves HTTPS (base_url `https://…`)."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        *,
        port: int = 0,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.app, self.port, self.tls = app, port, tls
        self.base_url = ""
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> str:
        error_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, _QuietDrops) for f in error_log.filters):
            error_log.addFilter(_QuietDrops())
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            ws="none",
            log_config=None,
            log_level=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            ssl_certfile=self.tls[0] if self.tls else None,
            ssl_keyfile=self.tls[1] if self.tls else None,
        )
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                sock.close()
                await self._task
                raise RuntimeError("the fake server did not start")
            await asyncio.sleep(0.005)
        self.base_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        return self.base_url

    async def __aexit__(self, *exc_info: object) -> None:
        close = getattr(self.app, "close", None)
        if close is not None:
            await close()
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task


class ThreadedFakeServer:
    """`with ThreadedFakeServer(app) as base_url:` - FakeServer in a thread with its own loop."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, port: int = 0) -> None:
        self.server = FakeServer(app, port=port)
        self.base_url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            async with self.server as url:
                self.base_url = url
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by __enter__
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if not self.base_url:
            raise RuntimeError("the fake server did not start") from self._error
        return self.base_url

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

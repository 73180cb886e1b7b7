"""Real-time benchmark: `/ws/chat` idle hold, fan-out and streamed answers, and python-socketio.

Scenarios, each against a real server process on loopback:

* **idle** — N connections opened, authenticated and joined to a conversation (socket.io:
  connected to the namespace and joined to a room), then held for `--hold-s`. Server RSS
  (`VmRSS`) before the first connection and after the hold; RSS per connection = delta / N. Sizes
  grow in one server (1k, then 5k, then 10k), so each figure is "N connections open". Server CPU
  during the hold is reported too.
* **fanout** — N subscribers on ONE conversation (socket.io: one room). The bench publishes
  `--rate` messages per second for `--duration-s` seconds through the HTTP API (FrontDesk: the
  widget `POST .../messages`; socket.io: `POST /publish`, which emits to the room), open loop, with
  the send time in the text. Delivery latency = receive time - send time, measured on the client
  for every subscriber and every message (one clock: the publisher runs in this process).
  FrontDesk's conversation is taken over by an operator first (`POST .../takeover`), so that
  exactly `--rate` messages per second fan out and no bot answers; `--with-bot` keeps the bot.
* **upstream** — `--visitors` visitors, each on its own socket and conversation, of a site whose
  responder is an OpenAI-compatible endpoint: a fake upstream in this process that streams
  `--tokens` tokens at `--token-rate` per second, each token carrying the time it was written.
  All visitors ask at once (`--rounds` times, after one warm-up answer). Per token: added latency
  = client receive time - upstream write time; per answer: send -> upstream request, -> first
  `delta`, -> final `message`; and the server's CPU.
* **stream** — the same with the built-in knowledge responder (demo site, FrontDesk's docs).

Fairness: the server runs alone on CPU 0 (`taskset`), this client (and the fake upstream) on
CPU 1, both at nice -10 when allowed so that other work on a shared machine steals less; the CPU
the rest of the machine used is reported next to every measurement (`other%`). One client harness
for every target: a minimal RFC 6455 client on asyncio protocols (uvloop) that timestamps frames
on arrival; socket.io is spoken as Engine.IO v4 / Socket.IO v5 over that same WebSocket. No
compression anywhere (no extension offered; uvicorn's per-message deflate is off). FrontDesk is
served by `frontdesk.server.uvicorn_config` with only the WebSocket implementation replaced
(`--ws`); python-socketio (bench/socketio_target.py) and the bare ASGI app (`--target bare`)
run under the very same uvicorn options.

While FrontDesk connections are being opened, one extra connection sends a `typing` frame every
5 s (see `Keeper`); `--no-keepalive` turns it off. On `websockets-sansio` FrontDesk writes
`/ws/chat` frames straight to uvicorn's transport (frontdesk/realtime/wire.py); `--asgi-send`
makes the server under test use the ASGI `send` instead (same code otherwise), for a comparison
on the same machine at the same time. `--tracemalloc` (idle) reports what each
connection holds by allocation site (bench/footprint.py).

    .venv/bin/python -m bench.realtime standard          # the issue's set, then the report
    .venv/bin/python -m bench.realtime implementations   # per --ws: bare uvicorn and FrontDesk
    .venv/bin/python -m bench.realtime run --target frontdesk --ws wsproto --scenario idle \
        --sizes 1k,5k,10k
    .venv/bin/python -m bench.realtime run --target socketio --scenario fanout --sizes 1k
    .venv/bin/python -m bench.realtime report            # tables and ratios from bench/results
    .venv/bin/python -m bench.realtime send-floor        # the kernel's CPU per send, no server

Results: bench/results/realtime-<target>-<ws>-<scenario>[-<size>].json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import footprint

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
IMPLEMENTATIONS = ("wsproto", "websockets", "websockets-sansio")
BENCH_ORIGIN = "http://bench.local"
API = "/api/widget/v1"
HIGH_LIMITS = {
    "visitor_messages": "100000/minute",
    "visitor_burst": 100000,
    "site_messages": "100000/minute",
    "site_burst": 100000,
    "ip_messages": "100000/minute",
    "ip_burst": 100000,
}
QUESTIONS = (
    "How do I install FrontDesk?",
    "What is a responder?",
    "How do I verify visitor identity?",
    "How do I add documents to the knowledge base?",
    "Which databases are supported?",
    "How do webhooks work?",
)
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MARK = re.compile(rb"bench n=(\d+) t=([0-9.]+)")
NOISE: dict[str, float] = {}  # what the rest of the machine used before the current scenario
ASGI_SEND_ENV = "BENCH_ASGI_SEND"  # set for the server under test by `run --asgi-send`
PRIORITY = {"nice": 0}  # niceness of the server and this client (negative: ahead of other work)
DELIVERS_RATIO = 0.99  # a size "delivers" when at least this share of frames arrived in time


# --- small helpers ---------------------------------------------------------------------------


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: Any, p: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[index])


def summary_ms(values: Any) -> dict[str, float | None]:
    ordered = sorted(values)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {
        "n": len(ordered),
        "p50": r(percentile(ordered, 50)),
        "p90": r(percentile(ordered, 90)),
        "p99": r(percentile(ordered, 99)),
        "max": r(float(ordered[-1]) if ordered else None),
    }


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of a process in seconds (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def system_busy_s() -> float:
    """CPU seconds every process on the machine has used (not idle or iowait), from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used between creation and `stop`, in % of one core: by the server, by this client, and
    by everything else on the machine (`other`: a noisy neighbour when it is not near zero)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.wall0 = time.perf_counter()
        self.server0 = process_cpu_s(pid)
        self.client0 = own_cpu_s()
        self.system0 = system_busy_s()

    def stop(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.wall0
        server1, client1 = process_cpu_s(self.pid), own_cpu_s()
        server = None if server1 is None or self.server0 is None else server1 - self.server0
        client = client1 - self.client0
        other = max(0.0, system_busy_s() - self.system0 - (server or 0.0) - client)
        return {
            "wall_s": round(wall, 3),
            "server_cpu_s": None if server is None else round(server, 3),
            "server_cpu_pct": None if server is None else round(100 * server / wall, 1),
            "client_cpu_pct": round(100 * client / wall, 1),
            "other_cpu_pct": round(100 * other / wall, 1),
        }


def wait_for_quiet(limit_pct: float = 15.0, max_wait_s: float = 60.0) -> float:
    """Wait (bounded) until the rest of the machine uses less than `limit_pct` of a core over a
    second; returns the last reading, so that a noisy run is at least marked as such."""
    deadline = time.monotonic() + max_wait_s
    while True:
        before, started = system_busy_s() - own_cpu_s(), time.monotonic()
        time.sleep(1.0)
        busy = 100 * (system_busy_s() - own_cpu_s() - before) / (time.monotonic() - started)
        if busy < limit_pct or time.monotonic() > deadline:
            return round(busy, 1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def source_state() -> dict[str, Any]:
    """The commit measured, and which files under frontdesk/ differed from it (others may be
    editing the tree while the bench runs)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "frontdesk").splitlines()
    return {"commit": git("rev-parse", "HEAD"), "frontdesk_changes": [c[3:] for c in changed if c]}


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "packages": {
            name: version(name)
            for name in (
                "uvicorn",
                "websockets",
                "wsproto",
                "uvloop",
                "httptools",
                "starlette",
                "python-socketio",
                "python-engineio",
            )
        },
    }


# --- the client harness: a minimal RFC 6455 client on asyncio protocols ------------------------


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + key + _mask(payload, key)


Sink = Callable[["WsConn", bytes, float], None]


class HandshakeError(Exception):
    pass


class WsConn(asyncio.Protocol):
    """One client WebSocket. Text frames go to `dialect.on_text`; during setup they queue in
    `inbox` for `expect`, afterwards they go to `sink` with their arrival time."""

    def __init__(self, request: bytes, accept: bytes, dialect: Dialect, index: int) -> None:
        self.request = request
        self.accept = accept
        self.dialect = dialect
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inbox: deque[bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.sink: Sink | None = None
        self.fragments: bytearray | None = None
        self.close_code: int | None = None
        self.lost = False
        self.frames_in = 0
        self.state: dict[str, Any] = {}

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail(HandshakeError("handshake response too long"))
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            status = head.split("\r\n", 1)[0]
            if " 101 " not in status + " ":
                self._fail(HandshakeError(status))
                return
            if self.accept.decode() not in head:
                self._fail(HandshakeError(f"bad Sec-WebSocket-Accept: {head!r}"))
                return
            self.upgraded = True
            if not self.opened.done():
                self.opened.set_result(None)
        self._parse(now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        error = exc or ConnectionError(f"closed by server (code {self.close_code})")
        if not self.opened.done():
            self.opened.set_exception(error)
        self._wake(error)

    # frames

    def _parse(self, now: float) -> None:
        buf, pos, n = self.buf, 0, len(self.buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if b1 & 0x80:
                head += 4  # servers never mask; tolerate it anyway
            if n - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            if b1 & 0x80:
                payload = _mask(payload, bytes(buf[pos + head - 4 : pos + head]))
            pos += head + length
            self._frame(b0 & 0x80, b0 & 0x0F, payload, now)
        if pos:
            del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 0x0:
            if self.fragments is None:
                return
            self.fragments += payload
            if fin:
                payload, self.fragments = bytes(self.fragments), None
                self._text(payload, now)
        elif opcode in (0x1, 0x2):
            if fin:
                self._text(payload, now)
            else:
                self.fragments = bytearray(payload)
        elif opcode == 0x9:
            self.write_frame(0xA, payload)
        elif opcode == 0x8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.write_frame(0x8, payload[:2])
            if self.transport is not None:
                self.transport.close()

    def _text(self, payload: bytes, now: float) -> None:
        self.frames_in += 1
        if self.dialect.auto_reply(self, payload):
            return
        if self.sink is not None:
            self.sink(self, payload, now)
        else:
            self.inbox.append(payload)
            if len(self.inbox) > 1000:
                self.inbox.popleft()
            self._wake(None)

    def _wake(self, error: BaseException | None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def _fail(self, error: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    # API

    def write_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(opcode, payload))

    def send_text(self, text: str | bytes) -> None:
        self.write_frame(0x1, text.encode() if isinstance(text, str) else text)

    def send_json(self, frame: dict[str, Any]) -> None:
        self.write_frame(0x1, orjson.dumps(frame))

    async def expect(self, predicate: Callable[[bytes], bool], what: str) -> bytes:
        """The next queued text frame matching `predicate` (others are dropped)."""
        while True:
            while self.inbox:
                frame = self.inbox.popleft()
                if predicate(frame):
                    return frame
                if frame.startswith(b'{"type":"error"'):
                    raise HandshakeError(f"waiting for {what}: {frame[:200]!r}")
            if self.lost:
                raise ConnectionError(f"closed while waiting for {what} (code {self.close_code})")
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Dialect:
    """What a target speaks over the WebSocket: path, handshake headers, setup, keep-alives."""

    name = "?"
    path = "/"
    message_prefix = b""

    def headers(self, index: int) -> dict[str, str]:
        return {}

    async def setup(self, conn: WsConn) -> None:
        return None

    def auto_reply(self, conn: WsConn, payload: bytes) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class VisitorSpec:
    token: str
    conversation_id: str
    xff: str | None = None


class FrontDeskDialect(Dialect):
    """`/ws/chat`: auth -> ready, join -> joined (PROTOCOL.md, "Widget WebSocket")."""

    name = "frontdesk"
    path = "/ws/chat"
    message_prefix = b'{"type":"message"'

    def __init__(self, visitors: list[VisitorSpec], origin: str) -> None:
        self.visitors = visitors
        self.origin = origin

    def visitor(self, index: int) -> VisitorSpec:
        return self.visitors[index % len(self.visitors)]

    def headers(self, index: int) -> dict[str, str]:
        xff = self.visitor(index).xff
        return {"Origin": self.origin} | ({"X-Forwarded-For": xff} if xff else {})

    async def setup(self, conn: WsConn) -> None:
        visitor = self.visitor(conn.index)
        conn.send_json({"type": "auth", "access_token": visitor.token})
        await conn.expect(lambda f: f.startswith(b'{"type":"ready"'), "ready")
        conn.send_json({"type": "join", "conversation_id": visitor.conversation_id, "after_seq": 0})
        joined = await conn.expect(lambda f: f.startswith(b'{"type":"joined"'), "joined")
        conn.state["last_seq"] = orjson.loads(joined)["last_seq"]


class SocketIODialect(Dialect):
    """Engine.IO v4 / Socket.IO v5 over a plain WebSocket: open packet `0{...}`, `40` to connect
    to the default namespace, `420["join","bench"]` acknowledged by `430[...]`; `2` pings are
    answered with `3`; events arrive as `42["message",{...}]`."""

    name = "socketio"
    path = "/socket.io/?EIO=4&transport=websocket"
    message_prefix = b'42["message"'

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def headers(self, index: int) -> dict[str, str]:
        return {"Origin": self.origin}

    async def setup(self, conn: WsConn) -> None:
        await conn.expect(lambda f: f.startswith(b"0{"), "Engine.IO open")
        conn.send_text(b"40")
        await conn.expect(lambda f: f.startswith(b"40"), "namespace connect")
        conn.send_text(b'420["join","bench"]')
        await conn.expect(lambda f: f.startswith(b"430"), "join ack")

    def auto_reply(self, conn: WsConn, payload: bytes) -> bool:
        if payload == b"2":
            conn.send_text(b"3")
            return True
        return False


class BareDialect(Dialect):
    """The floor: a bare ASGI WebSocket app (`serve-bare`) that accepts and waits; no setup."""

    name = "bare"
    path = "/ws"
    message_prefix = b'{"type":"message"'


@dataclass(slots=True)
class OpenResult:
    conns: list[WsConn]
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0


async def open_one(host: str, port: int, dialect: Dialect, index: int, timeout_s: float) -> WsConn:
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())  # RFC 6455 says SHA-1
    lines = [
        f"GET {dialect.path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in dialect.headers(index).items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    conn: WsConn | None = None
    try:
        async with asyncio.timeout(timeout_s):
            _, conn = await loop.create_connection(
                lambda: WsConn(request, accept, dialect, index), host, port
            )
            await conn.opened
            await dialect.setup(conn)
    except BaseException:
        if conn is not None:
            conn.abort()
        raise
    return conn


async def open_many(
    host: str,
    port: int,
    dialect: Dialect,
    indices: range,
    *,
    concurrency: int = 100,
    timeout_s: float = 30.0,
    total_timeout_s: float = 180.0,
) -> OpenResult:
    """Open (and set up) one connection per index, `concurrency` at a time, bounded in time."""
    result = OpenResult(conns=[])
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    deadline = started + total_timeout_s

    async def one(index: int) -> None:
        async with gate:
            if time.perf_counter() > deadline:
                result.failures["total timeout"] += 1
                return
            try:
                result.conns.append(await open_one(host, port, dialect, index, timeout_s))
            except Exception as exc:
                kind = type(exc).__name__
                result.failures[kind] += 1
                result.examples.setdefault(kind, str(exc)[:300])

    await asyncio.gather(*(one(i) for i in indices))
    result.elapsed_s = time.perf_counter() - started
    return result


# --- servers ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Server:
    kind: str  # frontdesk | socketio
    ws: str
    host: str
    port: int
    pid: int
    data_dir: Path
    log_path: Path
    api_key: str | None = None
    site_id: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_problems(self) -> dict[str, Any]:
        """Error and warning lines the server logged (the log level is `warning`)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {"lines": 0, "examples": []}
        bad = [ln for ln in lines if re.search(r"error|warning|traceback|exception", ln, re.I)]
        kinds: Counter[str] = Counter()
        for line in bad:
            with contextlib.suppress(ValueError, AttributeError):
                record = json.loads(line)
                cause = str(record.get("exception") or "").strip().splitlines()[-1:]
                where = f" [{cause[0][:100]}]" if cause else ""
                kinds[f"{record.get('level')}: {str(record.get('message'))[:80]}{where}"] += 1
                continue
            kinds[line[:160]] += 1
        return {"lines": len(bad), "top": kinds.most_common(8)}


def frontdesk_command() -> str:
    candidate = Path(sys.executable).parent / "frontdesk"
    found = str(candidate) if candidate.exists() else shutil.which("frontdesk")
    if found is None:
        raise SystemExit("the `frontdesk` command is not installed (make install)")
    return found


def base_env(data_dir: Path, port: int, *, demo: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env |= {
        "FRONTDESK_DATA_DIR": str(data_dir),
        "FRONTDESK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "FRONTDESK_LOG_LEVEL": "warning",
        "FRONTDESK_WS_MAX_PER_IP": "100000",
        "FRONTDESK_WS_MAX_PER_SITE": "100000",
        "FRONTDESK_WS_MAX_PER_PROCESS": "100000",
        "FRONTDESK_ACCESS_TOKEN_TTL_S": "900",
        # the bench plays the reverse proxy: stream visitors each get their own address
        "FRONTDESK_TRUSTED_PROXIES": "127.0.0.1",
        "PYTHONPATH": str(REPO),
    }
    if demo:
        env["FRONTDESK_SEED_DEMO"] = "true"
    return env


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_tail(log_path)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after 120 s:\n{log_tail(log_path)}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group; SIGKILL it if it is still there after 10 s."""
    if process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def cli_json(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(argv, env=env, cwd=REPO, timeout=120, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:3])} failed:\n{done.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


@contextmanager
def running_server(
    kind: str,
    ws: str,
    *,
    server_cpu: int | None,
    demo: bool = False,
    traced: bool = False,
    asgi_send: bool = False,
) -> Iterator[Server]:
    """Start FrontDesk (migrated, with an admin key and a bench site) or the socket.io target on
    a free port, pinned to `server_cpu`; always stopped on the way out. `traced`: the server
    traces allocations (bench/footprint.py)."""
    with tempfile.TemporaryDirectory(prefix="fd-rt-") as tmp:
        data_dir, port = Path(tmp), free_port()
        env, log_path = base_env(data_dir, port, demo=demo), data_dir / "server.log"
        if traced:
            env[footprint.ENV] = str(data_dir)
        if asgi_send:
            env[ASGI_SEND_ENV] = "1"
        api_key = None
        if kind == "frontdesk":
            command = frontdesk_command()
            migrated = subprocess.run(
                [command, "migrate"], env=env, cwd=REPO, timeout=120, capture_output=True
            )
            if migrated.returncode != 0:
                raise RuntimeError(f"frontdesk migrate failed:\n{migrated.stderr[-3000:]!r}")
            api_key = cli_json([command, "apikey", "create", "--scopes", "admin", "--json"], env)[
                "key"
            ]
            module = "bench.realtime"
            argv = [sys.executable, "-m", module, "serve-frontdesk", "--ws", ws]
        elif kind == "bare":
            argv = [sys.executable, "-m", "bench.realtime", "serve-bare", "--ws", ws]
        else:
            argv = [sys.executable, "-m", "bench.socketio_target", "--ws", ws]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        if server_cpu is not None:
            argv = ["taskset", "-c", str(server_cpu), *argv]
        # the server inherits this process's niceness (see pin_client)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            server = Server(kind, ws, "127.0.0.1", port, process.pid, data_dir, log_path, api_key)
            wait_healthy(server.url, process, log_path)
            if kind == "frontdesk":
                prepare_frontdesk(server, demo=demo)
            yield server
        finally:
            stop_process(process)


def prepare_frontdesk(server: Server, *, demo: bool) -> None:
    """A bench site with high message limits (and the demo site's limits raised too)."""
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        created = http.post(
            "/api/v1/sites",
            json={"name": "B", "allowed_origins": [BENCH_ORIGIN], "limits": HIGH_LIMITS},
        )
        created.raise_for_status()
        server.site_id = created.json()["id"]
        if demo:
            http.patch("/api/v1/sites/site_demo", json={"limits": HIGH_LIMITS}).raise_for_status()


def serve_frontdesk(ws: str, host: str, port: int) -> None:
    """What `frontdesk serve` does (after `frontdesk migrate`), with the WebSocket
    implementation replaced: the rest of `frontdesk.server.uvicorn_config` is untouched."""
    import uvicorn

    from frontdesk.config import load_settings
    from frontdesk.logs import configure_logging
    from frontdesk.main import create_app
    from frontdesk.server import uvicorn_config

    raise_nofile()
    footprint.install_from_env()
    settings = load_settings()
    configure_logging(settings.log_level)
    config = uvicorn_config(create_app(settings), settings, host=host, port=port)
    config.ws = ws
    if os.environ.get(ASGI_SEND_ENV):  # `run --asgi-send`: no direct wire, every frame via ASGI
        from frontdesk.realtime.sockets import AsgiSocket

        AsgiSocket.direct_wire = lambda self, cut_off_s: None  # type: ignore[method-assign]
    # As `frontdesk serve` does: what startup built is kept out of the garbage collector's walks.
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run()


def bare_app() -> Any:
    """A minimal ASGI app: WebSockets at /ws are accepted and held; `POST /publish {"n", "t"}`
    sends one message frame (shaped like FrontDesk's) to every socket, one after the other."""
    sockets: dict[int, Callable[[dict[str, Any]], Any]] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            status, body = 200, b"{}"
            if scope["path"] == "/publish":
                chunks = []
                while True:
                    message = await receive()
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        break
                request = json.loads(b"".join(chunks))
                n, sent = int(request["n"]), float(request["t"])
                frame = {
                    "type": "message",
                    "message": {
                        "id": f"msg_{uuid.uuid4().hex[:20]}",
                        "conversation_id": "cnv_bare",
                        "seq": n + 1,
                        "role": "visitor",
                        "text": f"bench n={n} t={sent:.6f}",
                        "created_at": datetime.now(UTC).isoformat(),
                        "client_id": str(uuid.uuid4()),
                    },
                }
                text = orjson.dumps(frame).decode()
                for socket_send in list(sockets.values()):
                    with contextlib.suppress(Exception):
                        await socket_send({"type": "websocket.send", "text": text})
                status = 202
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        key = id(send)
        sockets[key] = send
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            sockets.pop(key, None)

    return app


def serve_bare(ws: str, host: str, port: int) -> None:
    """The bare app under FrontDesk's uvicorn options, with the WebSocket implementation `ws`."""
    import uvicorn

    from frontdesk.config import load_settings
    from frontdesk.server import uvicorn_config

    raise_nofile()
    footprint.install_from_env()
    settings = load_settings()
    config = uvicorn_config(bare_app(), settings, host=host, port=port)
    config.ws = ws
    uvicorn.Server(config).run()


def send_floor(size: int, rounds: int) -> float:
    """The kernel's share of a fan-out: CPU per `socket.send` of one 230-byte text frame to each
    of `size` loopback TCP sockets, `rounds` times 10 per second, with a reader draining every
    socket in a child process on the other CPU (as the bench's client does). No event loop, no
    WebSocket library: what any server pays per subscriber, whatever it does above the send.
    Returns microseconds of this process's CPU (user + system) per send."""
    import select

    raise_nofile()
    cpus = sorted(os.sched_getaffinity(0))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        port = listener.getsockname()[1]
        readers, writers = [], []
        for _ in range(size):
            readers.append(socket.create_connection(("127.0.0.1", port)))
            writer, _ = listener.accept()
            writer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as uvicorn's
            writers.append(writer)
    frame = bytes((0x81, 126)) + (226).to_bytes(2, "big") + b"x" * 226
    child = os.fork()
    if child == 0:  # the reader: every byte, on the other CPU
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[1]})
        for writer in writers:
            writer.close()
        poll = select.epoll()
        for reader in readers:
            reader.setblocking(False)
            poll.register(reader.fileno(), select.EPOLLIN)
        left = size * rounds * len(frame)
        while left > 0:
            for fd, _ in poll.poll(1.0):
                with contextlib.suppress(BlockingIOError):
                    left -= len(os.read(fd, 65536))
        os._exit(0)
    os.sched_setaffinity(0, {cpus[0]})
    for reader in readers:
        reader.close()
    time.sleep(0.5)
    started = time.process_time()
    for _ in range(rounds):
        for writer in writers:
            writer.send(frame)
        time.sleep(0.1)
    cpu_s = time.process_time() - started
    os.waitpid(child, 0)
    for writer in writers:
        writer.close()
    return cpu_s / (size * rounds) * 1e6


# --- FrontDesk visitors ----------------------------------------------------------------------


async def new_visitor(
    http: httpx.AsyncClient, site_id: str, origin: str, xff: str | None = None
) -> VisitorSpec:
    headers = {"Origin": origin} | ({"X-Forwarded-For": xff} if xff else {})
    session = await http.post(f"{API}/sessions", json={"site_id": site_id}, headers=headers)
    session.raise_for_status()
    token = session.json()["access_token"]
    conversation = await http.post(
        f"{API}/conversations", headers=headers | {"Authorization": f"Bearer {token}"}
    )
    conversation.raise_for_status()
    return VisitorSpec(token, str(conversation.json()["id"]), xff)


async def hand_to_person(server: Server, conversation_id: str) -> str:
    """Take the conversation over as an operator, so that the bot does not answer the fan-out
    messages: `POST /api/v1/conversations/{id}/takeover`; on a build without that endpoint, the
    bench sets `handler = 'operator'` in its own SQLite file. Returns which way was used."""
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        taken = await http.post(f"/api/v1/conversations/{conversation_id}/takeover")
    if taken.status_code < 300:
        return "api"
    if taken.status_code not in (404, 405):
        taken.raise_for_status()
    with contextlib.closing(sqlite3.connect(server.data_dir / "frontdesk.db", timeout=10)) as db:
        changed = db.execute(
            "UPDATE conversations SET handler = 'operator' WHERE id = ?", (conversation_id,)
        ).rowcount
        db.commit()
    if changed != 1:
        raise RuntimeError(f"conversation {conversation_id} not found in the bench database")
    return "sqlite"


# --- scenarios -------------------------------------------------------------------------------


def dialect_for(server: Server, visitor: VisitorSpec | None) -> Dialect:
    if server.kind == "socketio":
        return SocketIODialect(BENCH_ORIGIN)
    if server.kind == "bare":
        return BareDialect()
    assert visitor is not None
    return FrontDeskDialect([visitor], BENCH_ORIGIN)


class Keeper:
    """Worked around a FrontDesk bug found by this bench (fixed since): a joined conversation's
    feed died after 15 s without traffic on the conversation. While connections are being opened,
    one extra joined connection sends a `typing` frame every few seconds, which every feed of the
    conversation receives; it is quiet during measurements. Kept so that runs stay comparable
    with the earlier ones; `--no-keepalive` turns it off."""

    def __init__(self, conn: WsConn | None, conversation_id: str, every_s: float = 5.0) -> None:
        self.conn = conn
        self.conversation_id = conversation_id
        self.every_s = every_s
        self.task: asyncio.Task[None] | None = None
        self.beats = 0

    @classmethod
    async def open(
        cls, server: Server, dialect: Dialect, visitor: VisitorSpec | None, enabled: bool
    ) -> Keeper:
        if not enabled or server.kind != "frontdesk" or visitor is None:
            return cls(None, "")
        conn = await open_one(server.host, server.port, dialect, 0, 30)
        return cls(conn, visitor.conversation_id)

    def beat(self) -> None:
        if self.conn is not None:
            self.conn.send_json({"type": "typing", "conversation_id": self.conversation_id})
            self.conn.inbox.clear()
            self.beats += 1

    async def _loop(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self.every_s)

    def start(self) -> None:
        if self.conn is not None and self.task is None:
            self.task = asyncio.create_task(self._loop())

    async def quiet(self, conns: list[WsConn], settle_max_s: float = 4.0) -> float:
        """Stop beating after one last beat, and wait (at most `settle_max_s`) until every
        connection has received it, so that no typing fan-out runs into the measurement.
        Returns the seconds that took."""
        if self.conn is None:
            return 0.0
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        before = [c.frames_in for c in conns]
        started = time.perf_counter()
        self.beat()
        while time.perf_counter() - started < settle_max_s:
            if all(c.frames_in > b or c.lost for c, b in zip(conns, before, strict=True)):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        return round(time.perf_counter() - started, 2)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.conn is not None:
            self.conn.abort()


async def warm_up(server: Server, dialect: Dialect) -> None:
    """One connection opened and closed, so that first-use costs are not counted per connection."""
    with contextlib.suppress(Exception):
        conn = await open_one(server.host, server.port, dialect, 0, 10)
        conn.abort()
    await asyncio.sleep(1.0)


async def scenario_idle(
    server: Server, sizes: list[int], hold_s: float, *, keepalive: bool, traced: bool = False
) -> dict[str, Any]:
    visitor = None
    if server.kind == "frontdesk":
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert server.site_id is not None
            visitor = await new_visitor(http, server.site_id, BENCH_ORIGIN)
    dialect = dialect_for(server, visitor)
    await warm_up(server, dialect)
    keeper = await Keeper.open(server, dialect, visitor, keepalive)
    snapshots = [footprint.take(server.pid, server.data_dir, 0)] if traced else []
    baseline = rss_kb(server.pid) or 0
    conns: list[WsConn] = []
    rows: list[dict[str, Any]] = []
    failures: Counter[str] = Counter()
    examples: dict[str, str] = {}
    try:
        for size in sorted(sizes):
            if size <= len(conns):
                continue
            keeper.start()
            connecting = CpuMeter(server.pid)
            opened = await open_many(server.host, server.port, dialect, range(len(conns), size))
            connect_cpu = connecting.stop()
            conns += opened.conns
            settle_s = await keeper.quiet(conns)
            failures.update(opened.failures)
            for kind, text in opened.examples.items():
                examples.setdefault(kind, text)
            connected = rss_kb(server.pid) or 0
            meter = CpuMeter(server.pid)
            await asyncio.sleep(hold_s)
            cpu = meter.stop()
            held = rss_kb(server.pid) or 0
            alive = sum(1 for c in conns if not c.lost)
            rows.append(
                {
                    "size": size,
                    "open": len(conns),
                    "alive_after_hold": alive,
                    "connect_s": round(opened.elapsed_s, 2),
                    "connects_per_s": round((size - (rows[-1]["open"] if rows else 0))
                                            / max(opened.elapsed_s, 1e-9), 1),
                    "connect_server_cpu_ms_per_conn": round(
                        1000 * (connect_cpu["server_cpu_s"] or 0) / max(len(opened.conns), 1), 2
                    ),
                    "connect_other_cpu_pct": connect_cpu["other_cpu_pct"],
                    "rss_baseline_kb": baseline,
                    "rss_connected_kb": connected,
                    "rss_after_hold_kb": held,
                    "rss_per_conn_kb": round((held - baseline) / max(alive, 1), 2),
                    "hold_server_cpu_pct": cpu["server_cpu_pct"],
                    "hold_other_cpu_pct": cpu["other_cpu_pct"],
                    "keepalive_settle_s": settle_s,
                    "failures": dict(opened.failures),
                }
            )  # fmt: skip
            print_rows("idle", server, rows[-1:], header=len(rows) == 1)
            if traced:
                snapshots.append(footprint.take(server.pid, server.data_dir, len(snapshots)))
                report = footprint.per_connection(snapshots[0], snapshots[-1], alive)
                rows[-1]["tracemalloc"] = report
                footprint.print_report(report)
    finally:
        for conn in conns:
            conn.abort()
        await keeper.close()
    return {
        "rows": rows,
        "failures": dict(failures),
        "failure_examples": examples,
        "keepalive_beats": keeper.beats,
        "traced": traced,  # allocations traced: RSS and CPU are not comparable with other runs
    }


@dataclass(slots=True)
class FanoutTally:
    subscribers: int
    messages: int
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    numbers: array[int] = field(default_factory=lambda: array("i"))
    per_message: Counter[int] = field(default_factory=Counter)
    other_frames: Counter[str] = field(default_factory=Counter)
    out_of_order: int = 0
    received: int = 0
    expected: int = 0
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def sink(self, conn: WsConn, payload: bytes, now: float) -> None:
        match = MARK.search(payload)
        if match is None:
            kind = payload[:24].decode(errors="replace")
            self.other_frames[kind.split(",")[0]] += 1
            return
        n, sent = int(match[1]), float(match[2])
        self.latencies_ms.append((now - sent) * 1000)
        self.numbers.append(n)
        self.per_message[n] += 1
        self.received += 1
        if self.received >= self.expected:
            self.complete.set()
        last = conn.state.get("last_n", -1)
        if n <= last:
            self.out_of_order += 1
        conn.state["last_n"] = n


def per_message_latency(tally: FanoutTally, count: int) -> list[dict[str, Any]]:
    """Per published message: how many subscribers got it, median and max latency (ms)."""
    groups: list[list[float]] = [[] for _ in range(count)]
    for n, latency in zip(tally.numbers, tally.latencies_ms, strict=True):
        if 0 <= n < count:
            groups[n].append(latency)
    return [
        {"n": n, "got": len(g), "p50": round(percentile(g, 50) or 0, 1), "max": round(max(g), 1)}
        if g
        else {"n": n, "got": 0}
        for n, g in enumerate(groups)
    ]


async def publish_loop(
    server: Server,
    visitor: VisitorSpec | None,
    rate: float,
    count: int,
) -> dict[str, Any]:
    """`count` messages at `rate` per second, open loop: each request on its own task."""
    http_ms: list[float] = []
    by_number: dict[int, float] = {}
    errors: Counter[str] = Counter()
    headers = {"Origin": BENCH_ORIGIN}
    if visitor is not None:
        headers["Authorization"] = f"Bearer {visitor.token}"
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=30, limits=limits
    ) as http:

        async def one(n: int) -> None:
            sent = time.perf_counter()
            try:
                if visitor is None:
                    response = await http.post("/publish", json={"n": n, "t": sent})
                else:
                    response = await http.post(
                        f"{API}/conversations/{visitor.conversation_id}/messages",
                        json={"client_id": str(uuid.uuid4()), "text": f"bench n={n} t={sent:.6f}"},
                    )
                if response.status_code >= 300:
                    errors[f"HTTP {response.status_code}"] += 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
            http_ms.append((time.perf_counter() - sent) * 1000)
            by_number[n] = round(http_ms[-1], 1)

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.1
        for n in range(count):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        _, pending = await asyncio.wait(tasks, timeout=60)
        for task in pending:
            task.cancel()
        errors["publish timeout"] += len(pending)
    return {
        "http_ms": summary_ms(http_ms),
        "errors": dict(+errors),
        "http_ms_by_message": [by_number.get(n) for n in range(count)],
    }


async def scenario_fanout(
    server: Server, size: int, rate: float, duration_s: float, *, with_bot: bool, keepalive: bool
) -> dict[str, Any]:
    visitor, takeover = None, None
    if server.kind == "frontdesk":
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert server.site_id is not None
            visitor = await new_visitor(http, server.site_id, BENCH_ORIGIN)
        if not with_bot:
            takeover = await hand_to_person(server, visitor.conversation_id)
    dialect = dialect_for(server, visitor)
    await warm_up(server, dialect)
    keeper = await Keeper.open(server, dialect, visitor, keepalive)
    keeper.start()
    opened = await open_many(server.host, server.port, dialect, range(size))
    conns = opened.conns
    settle_s = await keeper.quiet(conns)
    count = max(1, round(rate * duration_s))
    tally = FanoutTally(subscribers=len(conns), messages=count, expected=len(conns) * count)
    try:
        for conn in conns:
            conn.sink = tally.sink
            conn.inbox.clear()
        rss_before = rss_kb(server.pid)
        meter = CpuMeter(server.pid)
        publish = await publish_loop(server, visitor, rate, count)
        expected = tally.expected = len(conns) * count
        with contextlib.suppress(TimeoutError):  # everything delivered, or 10 s after the last
            await asyncio.wait_for(tally.complete.wait(), 10.0)
        cpu = meter.stop()
        rss_after = rss_kb(server.pid)
        lost_conns = sum(1 for c in conns if c.lost)
        close_codes = Counter(str(c.close_code) for c in conns if c.lost)
    finally:
        for conn in conns:
            conn.abort()
        await keeper.close()
    delivered = tally.received / expected if expected else 0.0
    frames = tally.received + sum(tally.other_frames.values())
    server_cpu_s = cpu["server_cpu_s"] or 0.0
    return {
        "subscribers": len(conns),
        "wanted_subscribers": size,
        "connect_s": round(opened.elapsed_s, 2),
        "connect_failures": dict(opened.failures),
        "failure_examples": opened.examples,
        "messages": count,
        "rate_per_s": rate,
        "expected_frames": expected,
        "delivered_frames": tally.received,
        "delivered_ratio": round(delivered, 5),
        "delivers": delivered >= DELIVERS_RATIO and lost_conns == 0,
        "latency_ms": summary_ms(tally.latencies_ms),
        "latency_ms_by_message": per_message_latency(tally, count),
        "out_of_order_or_duplicate": tally.out_of_order,
        "other_frames": dict(tally.other_frames.most_common(10)),
        "connections_lost": lost_conns,
        "close_codes": dict(close_codes),
        "publish": publish,
        "cpu": cpu,
        "server_frames_per_cpu_s": round(frames / server_cpu_s) if server_cpu_s else None,
        "rss_kb": {"before": rss_before, "after": rss_after},
        "with_bot": with_bot if server.kind == "frontdesk" else None,
        "takeover": takeover,
        "keepalive_beats": keeper.beats,
        "keepalive_settle_s": settle_s,
    }


def stream_sink(conn: WsConn, payload: bytes, now: float) -> None:
    state = conn.state
    if payload.startswith(b'{"type":"ack"'):
        state.setdefault("ack", now)
    elif payload.startswith(b'{"type":"delta"'):
        state.setdefault("delta", now)
        state["deltas"] = state.get("deltas", 0) + 1
    elif payload.startswith(b'{"type":"message"') and b'"role":"assistant"' in payload:
        state.setdefault("final", now)
        if b'"fallback":true' in payload:
            state["fallback"] = True
    elif payload.startswith(b'{"type":"error"'):
        state.setdefault("errors", []).append(payload[:200].decode(errors="replace"))


class StreamRound:
    """One round of streamed answers: set `answered` when every visitor has its final answer."""

    def __init__(self, visitors: int) -> None:
        self.visitors = visitors
        self.finals = 0
        self.answered = asyncio.Event()

    def sink(self, conn: WsConn, payload: bytes, now: float) -> None:
        had = "final" in conn.state
        stream_sink(conn, payload, now)
        if not had and "final" in conn.state:
            self.finals += 1
            if self.finals >= self.visitors:
                self.answered.set()


async def scenario_stream(
    server: Server, visitors: int, rounds: int, timeout_s: float
) -> dict[str, Any]:
    origin = server.url
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
        gate = asyncio.Semaphore(20)

        async def make(i: int) -> VisitorSpec:
            async with gate:
                xff = f"198.18.{i // 250}.{i % 250 + 1}"
                return await new_visitor(http, "site_demo", origin, xff)

        specs = await asyncio.gather(*(make(i) for i in range(visitors)))
    dialect = FrontDeskDialect(list(specs), origin)
    opened = await open_many(server.host, server.port, dialect, range(visitors))
    conns = sorted(opened.conns, key=lambda c: c.index)
    results: list[dict[str, Any]] = []
    ack_ms: list[float] = []
    delta_ms: list[float] = []
    final_ms: list[float] = []
    unanswered = fallbacks = 0
    errors: Counter[str] = Counter()
    try:
        await asyncio.sleep(1.0)  # let the greeting and joins settle
        for round_no in range(rounds):
            round_ = StreamRound(len(conns))
            for conn in conns:
                conn.state = {}
                conn.sink = round_.sink
            meter = CpuMeter(server.pid)
            for conn in conns:
                spec = dialect.visitor(conn.index)
                conn.state["sent"] = time.perf_counter()
                conn.send_json(
                    {
                        "type": "send",
                        "conversation_id": spec.conversation_id,
                        "client_id": str(uuid.uuid4()),
                        "text": QUESTIONS[(conn.index + round_no) % len(QUESTIONS)],
                    }
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(round_.answered.wait(), timeout_s)
            cpu = meter.stop()
            for conn in conns:
                s = conn.state
                if "ack" in s:
                    ack_ms.append((s["ack"] - s["sent"]) * 1000)
                if "delta" in s:
                    delta_ms.append((s["delta"] - s["sent"]) * 1000)
                if "final" in s:
                    final_ms.append((s["final"] - s["sent"]) * 1000)
                else:
                    unanswered += 1
                fallbacks += bool(s.get("fallback"))
                for error in s.get("errors", []):
                    errors[error[:120]] += 1
            results.append({"round": round_no + 1, "cpu": cpu})
            await asyncio.sleep(0.5)
    finally:
        for conn in conns:
            conn.abort()
    return {
        "visitors": len(conns),
        "connect_failures": dict(opened.failures),
        "rounds": rounds,
        "ack_ms": summary_ms(ack_ms),
        "first_delta_ms": summary_ms(delta_ms),
        "final_ms": summary_ms(final_ms),
        "unanswered": unanswered,
        "fallback_answers": fallbacks,
        "errors": dict(errors),
        "per_round": results,
        "server_cpu_pct": max((r["cpu"]["server_cpu_pct"] or 0 for r in results), default=None),
        "connections_lost": sum(1 for c in conns if c.lost),
        "note": "knowledge responder (no upstream): the 30 tokens/s fake-upstream scenario needs "
        "the OpenAI/Dify responders, not built yet",
    }  # fmt: skip


TOKEN = re.compile(rb"<t([0-9]+\.[0-9]{6})>")


class FakeUpstream:
    """An OpenAI-compatible Chat Completions endpoint (`POST /v1/chat/completions`,
    `stream: true`) that streams `tokens` tokens at `rate` per second to every request, each
    token carrying the time it was written (`<t{perf_counter}>`), so that the client can measure
    what FrontDesk adds between the upstream and the browser. It runs in the bench process (the
    client's CPU) and records when each question reached it."""

    def __init__(self, tokens: int, rate: float) -> None:
        self.tokens = tokens
        self.rate = rate
        self.arrivals: dict[str, float] = {}
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(120):
                await self._serve(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = orjson.loads(await reader.readexactly(length)) if length else {}
        arrived = time.perf_counter()
        self.requests += 1
        question = str((body.get("messages") or [{}])[-1].get("content", ""))
        tag = re.search(r"q\d+-\d+", question)
        if tag:
            self.arrivals[tag[0]] = arrived
        if not head.startswith("POST ") or "/chat/completions" not in head.split("\r\n")[0]:
            writer.write(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\nconnection: close\r\n\r\n"
        )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": "fake",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + orjson.dumps(data) + b"\n\n"

        for i in range(self.tokens):
            delay = arrived + (i + 1) / self.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            delta = {"content": f" <t{time.perf_counter():.6f}>"}
            if i == 0:
                delta["role"] = "assistant"
            writer.write(chunk(delta))
            await writer.drain()
        usage = {
            "prompt_tokens": 10,
            "completion_tokens": self.tokens,
            "total_tokens": 10 + self.tokens,
        }
        writer.write(chunk({}, "stop"))
        final = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                 "model": "fake", "choices": [], "usage": usage}  # fmt: skip
        writer.write(b"data: " + orjson.dumps(final) + b"\n\ndata: [DONE]\n\n")
        await writer.drain()


class UpstreamRound:
    """Per visitor: when the first delta and the final answer arrived; per token: the time from
    the fake upstream writing it to the client receiving the `delta` that carries it."""

    def __init__(self, visitors: int) -> None:
        self.visitors = visitors
        self.finals = 0
        self.answered = asyncio.Event()
        self.token_ms: array[float] = array("d")
        self.final_after_last_token_ms: list[float] = []

    def sink(self, conn: WsConn, payload: bytes, now: float) -> None:
        state = conn.state
        if payload.startswith(b'{"type":"delta"'):
            state.setdefault("delta", now)
            for match in TOKEN.finditer(payload):
                emitted = float(match[1])
                self.token_ms.append((now - emitted) * 1000)
                state["last_token"] = max(state.get("last_token", 0.0), emitted)
                state["tokens"] = state.get("tokens", 0) + 1
        elif payload.startswith(b'{"type":"message"') and b'"role":"assistant"' in payload:
            if "final" not in state:
                state["final"] = now
                if b"fallback" in payload:
                    state["fallback"] = True
                if "last_token" in state:
                    self.final_after_last_token_ms.append((now - state["last_token"]) * 1000)
                self.finals += 1
                if self.finals >= self.visitors:
                    self.answered.set()
        elif payload.startswith(b'{"type":"error"'):
            state.setdefault("errors", []).append(payload[:200].decode(errors="replace"))


async def _warm_answer(conn: WsConn, dialect: FrontDeskDialect) -> float | None:
    """One answer before the measurement: the first use of the upstream client is not counted."""
    tally = UpstreamRound(1)
    conn.state, conn.sink = {}, tally.sink
    started = time.perf_counter()
    conn.send_json(
        {
            "type": "send",
            "conversation_id": dialect.visitor(conn.index).conversation_id,
            "client_id": str(uuid.uuid4()),
            "text": "warm-up",
        }
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.answered.wait(), 30)
        return round((time.perf_counter() - started) * 1000, 1)
    return None


async def scenario_upstream(
    server: Server, visitors: int, rounds: int, tokens: int, rate: float, timeout_s: float
) -> dict[str, Any]:
    upstream = FakeUpstream(tokens, rate)
    await upstream.start()
    try:
        return await _upstream_rounds(server, upstream, visitors, rounds, timeout_s)
    finally:
        await upstream.close()


async def _upstream_rounds(
    server: Server, upstream: FakeUpstream, visitors: int, rounds: int, timeout_s: float
) -> dict[str, Any]:
    responder = {
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{upstream.port}/v1",
        "api_key": "bench",
        "model": "fake",
    }
    headers = {"Authorization": f"Bearer {server.api_key}"}
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
        created = await http.post(
            "/api/v1/sites",
            headers=headers,
            json={
                "name": "Upstream",
                "allowed_origins": [BENCH_ORIGIN],
                "limits": HIGH_LIMITS,
                "responder": responder,
                "options": {"answer_cache": False},
            },
        )
        created.raise_for_status()
        site_id = created.json()["id"]
        gate = asyncio.Semaphore(20)

        async def make(i: int) -> VisitorSpec:
            async with gate:
                xff = f"198.18.{i // 250}.{i % 250 + 1}"
                return await new_visitor(http, site_id, BENCH_ORIGIN, xff)

        specs = await asyncio.gather(*(make(i) for i in range(visitors)))
    dialect = FrontDeskDialect(list(specs), BENCH_ORIGIN)
    opened = await open_many(server.host, server.port, dialect, range(visitors))
    conns = sorted(opened.conns, key=lambda c: c.index)
    token_ms: list[float] = []
    after_last: list[float] = []
    to_upstream_ms: list[float] = []
    first_delta_ms: list[float] = []
    final_ms: list[float] = []
    per_round: list[dict[str, Any]] = []
    unanswered = fallbacks = short = 0
    errors: Counter[str] = Counter()
    try:
        await asyncio.sleep(1.0)
        warm_ms = await _warm_answer(conns[0], dialect) if conns else None
        for round_no in range(rounds):
            tally = UpstreamRound(len(conns))
            for conn in conns:
                conn.state = {}
                conn.sink = tally.sink
            meter = CpuMeter(server.pid)
            for conn in conns:
                spec = dialect.visitor(conn.index)
                conn.state["sent"] = time.perf_counter()
                conn.send_json(
                    {
                        "type": "send",
                        "conversation_id": spec.conversation_id,
                        "client_id": str(uuid.uuid4()),
                        "text": f"Tell me about shipping, q{conn.index}-{round_no}",
                    }
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.answered.wait(), timeout_s)
            cpu = meter.stop()
            for conn in conns:
                state = conn.state
                arrived = upstream.arrivals.get(f"q{conn.index}-{round_no}")
                if arrived is not None:
                    to_upstream_ms.append((arrived - state["sent"]) * 1000)
                if "delta" in state:
                    first_delta_ms.append((state["delta"] - state["sent"]) * 1000)
                if "final" in state:
                    final_ms.append((state["final"] - state["sent"]) * 1000)
                else:
                    unanswered += 1
                fallbacks += bool(state.get("fallback"))
                short += state.get("tokens", 0) < upstream.tokens
                for error in state.get("errors", []):
                    errors[error[:120]] += 1
            token_ms.extend(tally.token_ms)
            after_last.extend(tally.final_after_last_token_ms)
            per_round.append({"round": round_no + 1, "cpu": cpu, "tokens": len(tally.token_ms)})
            await asyncio.sleep(0.5)
    finally:
        for conn in conns:
            conn.abort()
    return {
        "visitors": len(conns),
        "connect_failures": dict(opened.failures),
        "rounds": rounds,
        "warm_up_answer_ms": warm_ms,
        "upstream": {
            "tokens": upstream.tokens,
            "rate_per_s": upstream.rate,
            "requests": upstream.requests,
        },
        "token_added_ms": summary_ms(token_ms),
        "to_upstream_ms": summary_ms(to_upstream_ms),
        "first_delta_ms": summary_ms(first_delta_ms),
        "final_ms": summary_ms(final_ms),
        "final_after_last_token_ms": summary_ms(after_last),
        "unanswered": unanswered,
        "fallback_answers": fallbacks,
        "answers_missing_tokens": short,
        "errors": dict(errors),
        "per_round": per_round,
        "server_cpu_pct": max((r["cpu"]["server_cpu_pct"] or 0 for r in per_round), default=None),
        "connections_lost": sum(1 for c in conns if c.lost),
    }


# --- output ----------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_rows(scenario: str, server: Server, rows: list[dict[str, Any]], header: bool) -> None:
    label = f"{server.kind}/{server.ws}"
    if scenario == "idle":
        if header:
            print(
                f"{'target':<28} {'conns':>6} {'alive':>6} {'conn/s':>7} {'ms CPU/conn':>11} "
                f"{'RSS base MB':>11} "
                f"{'RSS MB':>8} {'KB/conn':>8} {'idle CPU%':>9} {'other%':>6}"
            )
        for r in rows:
            print(
                f"{label:<28} {r['size']:>6} {r['alive_after_hold']:>6} {r['connects_per_s']:>7} "
                f"{fmt(r.get('connect_server_cpu_ms_per_conn'), 2):>11} "
                f"{r['rss_baseline_kb'] / 1024:>11.1f} {r['rss_after_hold_kb'] / 1024:>8.1f} "
                f"{r['rss_per_conn_kb']:>8.2f} {fmt(r['hold_server_cpu_pct']):>9} "
                f"{fmt(r.get('hold_other_cpu_pct')):>6}"
            )


def fanout_line(label: str, r: dict[str, Any], header: bool) -> str:
    lines = []
    if header:
        lines.append(
            f"{'target':<28} {'subs':>6} {'msgs':>5} {'delivered':>9} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8} {'srv CPU%':>8} {'cli CPU%':>8} {'frames/CPU-s':>12} {'POST p99':>8} "
            f"{'other%':>6}"
        )
    lat = r["latency_ms"]
    lines.append(
        f"{label:<28} {r['subscribers']:>6} {r['messages']:>5} "
        f"{100 * r['delivered_ratio']:>8.2f}% {fmt(lat['p50']):>8} {fmt(lat['p99']):>8} "
        f"{fmt(lat['max']):>8} {fmt(r['cpu']['server_cpu_pct']):>8} "
        f"{fmt(r['cpu']['client_cpu_pct']):>8} {fmt(r['server_frames_per_cpu_s']):>12} "
        f"{fmt(r['publish']['http_ms']['p99']):>8} {fmt(r['cpu'].get('other_cpu_pct')):>6}"
    )
    return "\n".join(lines)


def stream_lines(label: str, r: dict[str, Any]) -> str:
    out = [f"{'target':<28} {'visitors':>8} {'what':<12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for key, name in (("ack_ms", "ack"), ("first_delta_ms", "first delta"), ("final_ms", "final")):
        s = r[key]
        out.append(
            f"{label:<28} {r['visitors']:>8} {name:<12} {fmt(s['p50']):>8} {fmt(s['p99']):>8} "
            f"{fmt(s['max']):>8}"
        )
    out.append(
        f"  server CPU% (busiest round) {fmt(r['server_cpu_pct'])}; unanswered {r['unanswered']}; "
        f"fallback answers {r['fallback_answers']}; lost connections {r['connections_lost']}"
    )
    return "\n".join(out)


def upstream_lines(label: str, r: dict[str, Any]) -> str:
    out = [f"{'target':<28} {'visitors':>8} {'what':<22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for key, name in (
        ("token_added_ms", "added per token"),
        ("to_upstream_ms", "send -> upstream"),
        ("first_delta_ms", "send -> first delta"),
        ("final_after_last_token_ms", "last token -> final"),
        ("final_ms", "send -> final"),
    ):
        s = r[key]
        out.append(
            f"{label:<28} {r['visitors']:>8} {name:<22} {fmt(s['p50']):>8} {fmt(s['p99']):>8} "
            f"{fmt(s['max']):>8}"
        )
    u = r["upstream"]
    out.append(
        f"  {u['tokens']} tokens at {u['rate_per_s']:g}/s per answer; server CPU% (busiest round) "
        f"{fmt(r['server_cpu_pct'])}; unanswered {r['unanswered']}; fallback answers "
        f"{r['fallback_answers']}; answers missing tokens {r['answers_missing_tokens']}; "
        f"lost connections {r['connections_lost']}"
    )
    return "\n".join(out)


def write_result(name: str, server: Server, scenario: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"realtime-{name}.json"
    document = {
        "bench": "realtime",
        "scenario": scenario,
        "target": server.kind,
        "ws": server.ws,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "source": source_state(),
        "server_log": server.log_problems(),
        "noise": dict(NOISE),
        "nice": PRIORITY["nice"],
        "result": data,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunSpec:
    target: str
    ws: str
    scenario: str
    sizes: tuple[int, ...] = ()
    hold_s: float = 10.0
    rate: float = 10.0
    duration_s: float = 10.0
    with_bot: bool = False
    visitors: int = 200
    rounds: int = 2
    keepalive: bool = True
    until_undelivered: bool = False  # fan-out: stop after the first size that does not deliver
    tokens: int = 60  # upstream: tokens per answer
    token_rate: float = 30.0  # upstream: tokens per second
    traced: bool = False  # idle: where each connection's memory goes (bench/footprint.py)
    asgi_send: bool = False  # FrontDesk: frames through the ASGI `send`, not the direct wire


def pin_client() -> tuple[int | None, str]:
    """Pin this process to the second CPU; the server goes on the first. (server CPU, note).
    On a shared machine, also run both ahead of other work (nice -10) when allowed."""
    note = ""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
        PRIORITY["nice"] = -10
        note = "; server and client at nice -10"
    except OSError:
        note = "; normal priority (no permission for nice -10)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return None, "not pinned (needs 2 CPUs and taskset)" + note
    os.sched_setaffinity(0, {cpus[1]})
    return cpus[0], f"server on CPU {cpus[0]}, client on CPU {cpus[1]}" + note


async def run_spec(spec: RunSpec, server_cpu: int | None) -> list[Path]:
    written: list[Path] = []
    label_ws = spec.ws
    if spec.scenario == "idle":
        with running_server(
            spec.target, spec.ws, server_cpu=server_cpu, traced=spec.traced
        ) as server:
            data = await scenario_idle(
                server, list(spec.sizes), spec.hold_s, keepalive=spec.keepalive, traced=spec.traced
            )
            data["hold_s"] = spec.hold_s
            name = f"{spec.target}-{label_ws}-idle" + ("-traced" if spec.traced else "")
            written.append(write_result(name, server, "idle", data))
    elif spec.scenario == "fanout":
        for size in spec.sizes:
            with running_server(
                spec.target, spec.ws, server_cpu=server_cpu, asgi_send=spec.asgi_send
            ) as server:
                data = await scenario_fanout(
                    server,
                    size,
                    spec.rate,
                    spec.duration_s,
                    with_bot=spec.with_bot,
                    keepalive=spec.keepalive,
                )
                suffix = ""
                if spec.target == "frontdesk":
                    suffix += "-bot" if spec.with_bot else ""
                    suffix += "" if spec.keepalive else "-nokeepalive"
                    suffix += "-asgi-send" if spec.asgi_send else ""
                data["asgi_send"] = spec.asgi_send
                name = f"{spec.target}-{label_ws}-fanout-{size}{suffix}"
                label = f"{spec.target}/{spec.ws}{suffix}"
                print(fanout_line(label, data, header=True))
                written.append(write_result(name, server, "fanout", data))
            if spec.until_undelivered and not data["delivers"]:
                break  # the largest size this target still delivers has been found
    elif spec.scenario == "stream":
        if spec.target != "frontdesk":
            raise SystemExit("the stream scenario is FrontDesk's only")
        with running_server(spec.target, spec.ws, server_cpu=server_cpu, demo=True) as server:
            data = await scenario_stream(server, spec.visitors, spec.rounds, timeout_s=60)
            print(stream_lines(f"{spec.target}/{spec.ws}", data))
            name = f"{spec.target}-{label_ws}-stream-{spec.visitors}"
            written.append(write_result(name, server, "stream", data))
    elif spec.scenario == "upstream":
        if spec.target != "frontdesk":
            raise SystemExit("the upstream scenario is FrontDesk's only")
        with running_server(spec.target, spec.ws, server_cpu=server_cpu) as server:
            data = await scenario_upstream(
                server, spec.visitors, spec.rounds, spec.tokens, spec.token_rate, timeout_s=60
            )
            print(upstream_lines(f"{spec.target}/{spec.ws}", data))
            name = f"{spec.target}-{label_ws}-upstream-{spec.visitors}"
            written.append(write_result(name, server, "upstream", data))
    else:
        raise SystemExit(f"unknown scenario {spec.scenario}")
    return written


def standard_specs(ws: str) -> list[RunSpec]:
    """The issue's set for one WebSocket implementation (about 10 minutes on a quiet machine)."""
    return [
        RunSpec("frontdesk", ws, "idle", (1000, 5000, 10000)),
        RunSpec("frontdesk", ws, "fanout", (1000, 5000)),
        RunSpec("frontdesk", ws, "upstream", visitors=200),
        RunSpec("socketio", ws, "idle", (1000, 5000, 10000)),
        RunSpec("socketio", ws, "fanout", (1000, 5000, 10000), until_undelivered=True),
    ]


def implementation_specs(impls: list[str], *, frontdesk: bool) -> list[RunSpec]:
    """Choosing the WebSocket implementation: the bare ASGI app (the implementation alone) and,
    with `frontdesk`, FrontDesk itself: idle 1k/5k/10k and fan-out 1k per implementation."""
    specs = []
    for ws in impls:
        specs.append(RunSpec("bare", ws, "idle", (1000, 5000, 10000)))
        specs.append(RunSpec("bare", ws, "fanout", (1000, 5000)))
    if frontdesk:
        for ws in impls:
            specs.append(RunSpec("frontdesk", ws, "idle", (1000, 5000, 10000)))
            specs.append(RunSpec("frontdesk", ws, "fanout", (1000,)))
    return specs


def _interrupt(signum: int, _: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the `finally` that stop servers


def run_specs(specs: list[RunSpec], budget_s: float) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    hard = raise_nofile()
    if hard < 10_100:
        print(f"warning: RLIMIT_NOFILE is {hard}: 10k connections will not fit", file=sys.stderr)
    server_cpu, note = pin_client()
    print(f"# realtime bench: {note}; RLIMIT_NOFILE {hard}")
    started = time.perf_counter()
    failed = 0
    for spec in specs:
        if time.perf_counter() - started > budget_s:
            print(f"# budget of {budget_s:.0f} s spent: skipping {spec}")
            failed += 1
            continue
        quiet = wait_for_quiet(max_wait_s=30.0)
        NOISE["other_cpu_pct_before"] = quiet
        print(
            f"\n== {spec.target}/{spec.ws} {spec.scenario} {list(spec.sizes) or ''} "
            f"(rest of the machine before: {quiet}% of a core)",
            flush=True,
        )
        try:
            for path in asyncio.run(run_spec(spec, server_cpu)):
                print(f"   -> {path.relative_to(REPO)}")
        except Exception as exc:  # one failing scenario must not stop the others
            failed += 1
            print(f"!! {spec.target}/{spec.ws} {spec.scenario} failed: {exc!r}", file=sys.stderr)
    print(f"\n# done in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


# --- report ----------------------------------------------------------------------------------


def load_results() -> list[dict[str, Any]]:
    found = []
    for path in sorted(RESULTS_DIR.glob("realtime-*.json")):
        with contextlib.suppress(ValueError, OSError):
            document = json.loads(path.read_text())
            document["_file"] = path.name
            found.append(document)
    return found


def report(chosen: str) -> None:
    docs = load_results()
    idle = [d for d in docs if d["scenario"] == "idle" and not d["result"].get("traced")]
    fanout = [d for d in docs if d["scenario"] == "fanout"]
    stream = [d for d in docs if d["scenario"] == "stream"]
    print("\n## Idle hold (RSS per connection = (RSS after hold - RSS before) / connections)")
    first = True
    for d in sorted(idle, key=lambda d: (d["target"], d["ws"])):
        stub = Server(d["target"], d["ws"], "", 0, 0, Path(), Path())
        print_rows("idle", stub, d["result"]["rows"], header=first)
        first = False
    print("\n## Fan-out (delivery latency, every subscriber x every message)")
    first = True
    for d in sorted(fanout, key=lambda d: (d["target"], d["ws"], d["result"]["subscribers"])):
        bot = "-bot" if d["result"].get("with_bot") else ""
        bot += "-asgi-send" if d["result"].get("asgi_send") else ""
        print(fanout_line(f"{d['target']}/{d['ws']}{bot}", d["result"], header=first))
        first = False
    for d in stream:
        print("\n## Streamed answers (knowledge responder; send -> ack / first delta / final)")
        print(stream_lines(f"{d['target']}/{d['ws']}", d["result"]))
    for d in (d for d in docs if d["scenario"] == "upstream"):
        print("\n## Streamed answers from a fake OpenAI-compatible upstream")
        print(upstream_lines(f"{d['target']}/{d['ws']}", d["result"]))
    ratios(idle, fanout, chosen)


def ratios(idle: list[dict[str, Any]], fanout: list[dict[str, Any]], chosen: str) -> None:
    fd_idle = next((d for d in idle if d["target"] == "frontdesk" and d["ws"] == chosen), None)
    sio_idle = next((d for d in idle if d["target"] == "socketio"), None)
    print(f"\n## FrontDesk ({chosen}) vs python-socketio (ratio = socketio / frontdesk)")
    if fd_idle and sio_idle:
        sio_rows = {r["size"]: r for r in sio_idle["result"]["rows"]}
        for row in fd_idle["result"]["rows"]:
            other = sio_rows.get(row["size"])
            if other:
                print(
                    f"idle {row['size']:>6}: KB/conn frontdesk {row['rss_per_conn_kb']:.2f}, "
                    f"socketio {other['rss_per_conn_kb']:.2f}, "
                    f"ratio {other['rss_per_conn_kb'] / max(row['rss_per_conn_kb'], 1e-9):.2f}"
                )

    def by_size(target: str) -> dict[int, dict[str, Any]]:
        return {
            d["result"]["wanted_subscribers"]: d["result"]
            for d in fanout
            if d["target"] == target
            and (target == "socketio" or d["ws"] == chosen)
            and not d["result"].get("with_bot")
            and not d["result"].get("asgi_send")
        }

    fd, sio = by_size("frontdesk"), by_size("socketio")
    largest = None
    for size in sorted(set(fd) & set(sio)):
        a, b = fd[size]["latency_ms"]["p99"], sio[size]["latency_ms"]["p99"]
        ratio = (b / a) if a and b else None
        if sio[size]["delivers"]:
            largest = (size, ratio)
        print(
            f"fanout {size:>5}: p99 frontdesk {fmt(a)} ms ({100 * fd[size]['delivered_ratio']:.1f}%"
            f" delivered), socketio {fmt(b)} ms ({100 * sio[size]['delivered_ratio']:.1f}%"
            f" delivered), ratio {fmt(ratio, 2)}"
        )
    if largest:
        print(f"largest size python-socketio still delivers: {largest[0]}; p99 ratio "
              f"{fmt(largest[1], 2)} (budget: >= 10)")  # fmt: skip


# --- command line ----------------------------------------------------------------------------


def sizes_arg(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("k", "000")) for part in text.split(",") if part.strip())


def main(argv: list[str] | None = None) -> int:
    from frontdesk.server import WS_IMPLEMENTATION

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    standard = commands.add_parser("standard", help="the issue's set, then the report")
    standard.add_argument("--ws", default=WS_IMPLEMENTATION, choices=IMPLEMENTATIONS)
    standard.add_argument("--budget-s", type=float, default=900.0, help="skip what starts later")

    run = commands.add_parser("run", help="one target, implementation and scenario")
    run.add_argument("--target", choices=("frontdesk", "socketio", "bare"), default="frontdesk")
    run.add_argument("--ws", default=WS_IMPLEMENTATION, choices=IMPLEMENTATIONS)
    run.add_argument("--scenario", choices=("idle", "fanout", "upstream", "stream"), required=True)
    run.add_argument("--sizes", type=sizes_arg, default=(1000,), help="e.g. 1k,5k,10k")
    run.add_argument("--hold-s", type=float, default=10.0)
    run.add_argument("--rate", type=float, default=10.0, help="fan-out messages per second")
    run.add_argument("--duration-s", type=float, default=10.0)
    run.add_argument("--with-bot", action="store_true", help="fan-out: the bot answers too")
    run.add_argument("--visitors", type=int, default=200, help="stream: concurrent visitors")
    run.add_argument("--rounds", type=int, default=2, help="questions per visitor")
    run.add_argument("--tokens", type=int, default=60, help="upstream: tokens per answer")
    run.add_argument("--token-rate", type=float, default=30.0, help="upstream: tokens/s")
    run.add_argument(
        "--tracemalloc",
        action="store_true",
        help="idle: bytes per connection by allocation site (slow; RSS not comparable)",
    )
    run.add_argument(
        "--no-keepalive",
        dest="keepalive",
        action="store_false",
        help="no typing beats while connecting (see Keeper)",
    )
    run.add_argument(
        "--asgi-send",
        action="store_true",
        help="fan-out: FrontDesk's frames through the ASGI send, not straight to the transport",
    )

    rep = commands.add_parser("report", help="tables and ratios from bench/results")
    rep.add_argument("--chosen", default=WS_IMPLEMENTATION)

    for name in ("serve-frontdesk", "serve-bare"):
        serve = commands.add_parser(name, help="(internal) a server under test")
        serve.add_argument("--ws", default=WS_IMPLEMENTATION, choices=IMPLEMENTATIONS)
        serve.add_argument("--host", default="127.0.0.1")
        serve.add_argument("--port", type=int, required=True)

    floor = commands.add_parser(
        "send-floor", help="CPU per loopback send of one frame to each of N sockets (no server)"
    )
    floor.add_argument("--sizes", type=sizes_arg, default=(5000,), help="e.g. 1k,5k")
    floor.add_argument("--rounds", type=int, default=20)

    choose = commands.add_parser(
        "implementations", help="bare uvicorn and FrontDesk per WebSocket implementation"
    )
    choose.add_argument("--impls", default=",".join(IMPLEMENTATIONS))
    choose.add_argument("--bare-only", action="store_true", help="only the bare ASGI app")

    args = parser.parse_args(argv)
    if args.command == "serve-frontdesk":
        serve_frontdesk(args.ws, args.host, args.port)
        return 0
    if args.command == "serve-bare":
        serve_bare(args.ws, args.host, args.port)
        return 0
    if args.command == "report":
        report(args.chosen)
        return 0
    if args.command == "send-floor":
        for size in args.sizes:
            per_send = send_floor(size, args.rounds)
            print(f"{size} sockets x {args.rounds} rounds: {per_send:.2f} us CPU per send")
        return 0
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.command == "standard":
        status = run_specs(standard_specs(args.ws), args.budget_s)
        report(args.ws)
        return status
    if args.command == "implementations":
        impls = [i for i in args.impls.split(",") if i in IMPLEMENTATIONS]
        status = run_specs(implementation_specs(impls, frontdesk=not args.bare_only), 3600.0)
        report(WS_IMPLEMENTATION)
        return status
    spec = RunSpec(
        args.target,
        args.ws,
        args.scenario,
        args.sizes,
        hold_s=args.hold_s,
        rate=args.rate,
        duration_s=args.duration_s,
        with_bot=args.with_bot,
        visitors=args.visitors,
        rounds=args.rounds,
        keepalive=args.keepalive,
        tokens=args.tokens,
        token_rate=args.token_rate,
        traced=args.tracemalloc,
        asgi_send=args.asgi_send,
    )
    return run_specs([spec], budget_s=float("inf"))


if __name__ == "__main__":
    sys.exit(main())

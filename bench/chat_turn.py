"""Chat-turn latency benchmark: N concurrent widget visitors against a real `frontdesk serve`.

What it measures: the latency a visitor sees for one chat turn through the public widget HTTP API
(PROTOCOL.md), end to end over a real TCP socket to a real server process.

* A fresh data directory (and, with `--database-url`, a fresh PostgreSQL database `fd_bench`) is
  created, `frontdesk migrate` runs, then `frontdesk serve --demo` starts on a free port. The demo
  site (`site_demo`) answers from FrontDesk's own docs with the offline knowledge responder.
* Each simulated visitor starts a session, starts a conversation, then sends `--messages` messages
  with `Accept: text/event-stream`, pausing a jittered `--think-ms` between them (`0` = closed loop,
  every visitor sends again as soon as its answer ends: a saturation test).
* Per turn: TTFB = request sent -> first body chunk (the stored visitor message, i.e. the
  message was persisted and the stream opened); TTLB = request sent -> end of the stream (after
  `message_end`, i.e. the answer was computed, stored and delivered). A turn counts as completed
  only when its stream holds a final assistant `message` and `message_end`; anything else is an
  error. Answers that are the responder's fallback (an `error` event in the stream) are counted
  separately: the turn completed, but the knowledge path did not run.

Each visitor gets its own client address (from 198.18.0.0/15, the benchmarking range) through
`X-Forwarded-For`, the bench acting as the trusted reverse proxy, so per-IP rate limits apply per
visitor as in production (`--same-ip` sends everything from 127.0.0.1 instead).

By default the server is pinned to CPU 0 and this client to CPU 1 (`--no-pin` to disable), so that
the load generator does not steal the server's CPU. CPU seconds used during the load are reported
for the server, the client, the PostgreSQL backends and everything else on the machine (`other`:
a noisy neighbour when it is not near zero). The server is always stopped at the end, also on
Ctrl-C or SIGTERM.

    .venv/bin/python -m bench.chat_turn --visitors 100 --messages 5 --think-ms 1000
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SITE_ID = "site_demo"
ORIGIN = "http://127.0.0.1:8000"
API = "/api/widget/v1"
BENCH_DATABASE = "fd_bench"
QUESTIONS = (
    "How do I install FrontDesk?",
    "What is a responder?",
    "How do I verify visitor identity?",
    "How do I add documents to the knowledge base?",
    "Which databases are supported?",
    "How do webhooks work?",
)
# `--distinct-questions`: every turn of a run asks a different question (up to 10 × 8 × 25), so
# none is served from the answer cache and every turn runs retrieval.
OPENERS = (
    "",
    "Hi! ",
    "Hello, ",
    "Quick question: ",
    "Please help: ",
    "Hey, ",
    "Sorry, ",
    "One more thing: ",
    "Good morning! ",
    "Thanks. ",
)
TEMPLATES = (
    "How do I {}?",
    "Can I {}?",
    "What happens when I {}?",
    "Where do I {}?",
    "Is it possible to {}?",
    "What do I need to {}?",
    "How long does it take to {}?",
    "Who can {}?",
)
TOPICS = (
    "install FrontDesk",
    "upgrade FrontDesk",
    "use PostgreSQL",
    "rotate the secret key",
    "add an allowed origin",
    "verify a visitor",
    "refresh an access token",
    "add a document",
    "remove a document",
    "create an API key",
    "create a site",
    "change the greeting",
    "change the locale",
    "receive webhooks",
    "retry a webhook",
    "use Redis",
    "run migrations",
    "back up the data",
    "set rate limits",
    "embed the widget",
    "take over a conversation",
    "export conversations",
    "configure an OpenAI responder",
    "use Dify",
    "see metrics",
)


@dataclass(frozen=True, slots=True)
class Config:
    visitors: int
    messages: int
    think_ms: float
    ramp_s: float
    timeout_s: float
    request_timeout_s: float
    seed: int
    database_url: str | None
    pin: bool
    json_out: Path | None
    same_ip: bool
    distinct_questions: bool

    @property
    def db_kind(self) -> str:
        return "postgres" if self.database_url else "sqlite"

    @property
    def scenario(self) -> str:
        mode = "closed-loop" if self.think_ms <= 0 else f"paced {self.think_ms:g}ms"
        return f"{self.db_kind} {mode}"

    @property
    def result_path(self) -> Path:
        distinct = "-distinct" if self.distinct_questions else ""
        name = f"chat_turn-{self.db_kind}-{self.visitors}v-{self.think_ms:g}ms{distinct}.json"
        return self.json_out or RESULTS_DIR / name


@dataclass(frozen=True, slots=True)
class TurnResult:
    ttfb_ms: float | None = None
    ttlb_ms: float | None = None
    error: str | None = None
    fallback: bool = False
    answered: bool = False
    cached: bool = False
    detail: str | None = None


@dataclass(slots=True)
class Tally:
    """What the visitors did; appended to as turns finish (single event loop, no locking)."""

    turns: list[TurnResult] = field(default_factory=list)
    setup_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    turns_started: int = 0

    def add(self, result: TurnResult) -> None:
        self.turns.append(result)
        if result.error:
            self.error(result.error, result.detail)

    def error(self, kind: str, detail: str | None = None) -> None:
        self.errors[kind] += 1
        if detail:
            self.error_examples.setdefault(kind, detail[:300])


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    pid: int
    log_path: Path


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    tally: Tally
    elapsed_s: float
    timed_out: bool
    cpu_s: dict[str, float | None]


# --- arguments -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=100, help="concurrent visitors")
    parser.add_argument("--messages", type=int, default=5, help="messages per visitor")
    parser.add_argument(
        "--think-ms", type=float, default=1000.0, help="pause between messages, ±50%%; 0 = closed"
    )
    parser.add_argument("--ramp-s", type=float, default=2.0, help="spread visitor starts over this")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="wall-clock bound of load")
    parser.add_argument("--request-timeout-s", type=float, default=30.0, help="per request")
    parser.add_argument("--seed", type=int, default=1, help="seed of the think-time jitter")
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server to use (postgresql://user@host:port/...); the bench creates and "
        f"drops a fresh database named {BENCH_DATABASE} there. Default: SQLite in a temp dir.",
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU pinning")
    parser.add_argument(
        "--same-ip",
        action="store_true",
        help="all visitors from 127.0.0.1 (default: one address each, via X-Forwarded-For)",
    )
    parser.add_argument(
        "--distinct-questions",
        action="store_true",
        help="a different question every turn (no answer-cache hits; default: 6 FAQ questions)",
    )
    parser.add_argument("--json-out", type=Path, default=None, help="where to write the JSON")
    args = parser.parse_args(argv)
    if args.visitors < 1 or args.messages < 1:
        parser.error("--visitors and --messages must be at least 1")
    return Config(
        visitors=args.visitors,
        messages=args.messages,
        think_ms=max(0.0, args.think_ms),
        ramp_s=max(0.0, args.ramp_s),
        timeout_s=args.timeout_s,
        request_timeout_s=args.request_timeout_s,
        seed=args.seed,
        database_url=args.database_url,
        pin=args.pin,
        json_out=args.json_out,
        same_ip=args.same_ip,
        distinct_questions=args.distinct_questions,
    )


# --- CPU pinning -----------------------------------------------------------------------------


def pick_cpus(want_pin: bool) -> tuple[int, int] | None:
    """(server CPU, client CPU) when pinning is asked for and possible."""
    if not want_pin or shutil.which("taskset") is None:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


# --- database --------------------------------------------------------------------------------


def bench_database_url(url: str) -> tuple[str, str]:
    """(URL of the fresh bench database, URL of the server's maintenance database)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
        raise SystemExit(f"--database-url must be a PostgreSQL URL, got {parts.scheme}://")
    base = parts._replace(scheme="postgresql")
    return urlunsplit(base._replace(path=f"/{BENCH_DATABASE}")), urlunsplit(
        base._replace(path="/postgres")
    )


async def _recreate_database(admin_url: str, *, create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    finally:
        await conn.close()


@contextmanager
def bench_database(url: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database for the run (dropped afterwards), or None for SQLite."""
    if url is None:
        yield None
        return
    db_url, admin_url = bench_database_url(url)
    asyncio.run(_recreate_database(admin_url, create=True))
    try:
        yield db_url
    finally:
        asyncio.run(_recreate_database(admin_url, create=False))


# --- server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def frontdesk_command() -> str:
    candidate = Path(sys.executable).parent / "frontdesk"
    found = str(candidate) if candidate.exists() else shutil.which("frontdesk")
    if found is None:
        raise SystemExit("the `frontdesk` command is not installed (make install)")
    return found


def server_env(data_dir: Path, port: int, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env |= {
        "FRONTDESK_DATA_DIR": str(data_dir),
        "FRONTDESK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "FRONTDESK_LOG_LEVEL": "warning",
        # The bench plays the reverse proxy: it tells the server each visitor's own address.
        "FRONTDESK_TRUSTED_PROXIES": "127.0.0.1",
    }
    if database_url:
        env["FRONTDESK_DATABASE_URL"] = database_url
    return env


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_tail(log_path)}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after 90 s:\n{log_tail(log_path)}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it does not stop within 10 s."""
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


@contextmanager
def running_server(database_url: str | None, server_cpu: int | None) -> Iterator[Server]:
    """Migrate a fresh database, start `frontdesk serve --demo`, and always stop it."""
    with tempfile.TemporaryDirectory(prefix="fd-bench-") as tmp:
        data_dir, port = Path(tmp), free_port()
        env, command = server_env(data_dir, port, database_url), frontdesk_command()
        log_path = data_dir / "server.log"
        migrated = subprocess.run(
            [command, "migrate"], env=env, cwd=REPO, timeout=120, capture_output=True, text=True
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"frontdesk migrate failed:\n{migrated.stderr[-3000:]}")
        argv = [command, "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)]
        if server_cpu is not None:
            argv = ["taskset", "-c", str(server_cpu), *argv]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, process, log_path)
            yield Server(url=url, pid=process.pid, log_path=log_path)
        finally:
            stop_process(process)


# --- CPU accounting --------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_cpu_s() -> float | None:
    """CPU seconds all processes on the machine have used (busy, not idle/iowait), from /proc."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_database_backends() -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the bench database (empty for SQLite)."""
    found: dict[int, float] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("postgres") and f" {BENCH_DATABASE} " in cmdline:
            cpu = process_cpu_s(int(proc.name))
            if cpu is not None:
                found[int(proc.name)] = cpu
    return found


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    server: float | None
    client: float
    database: dict[int, float]
    system: float | None

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        return cls(
            process_cpu_s(server_pid), own_cpu_s(), bench_database_backends(), system_busy_cpu_s()
        )

    def since(self, before: CpuSnapshot) -> dict[str, float | None]:
        """CPU seconds used between two snapshots: by the server, this client, the database's
        backends, and everything else on the machine (a noisy neighbour when non-zero)."""
        server = None
        if self.server is not None and before.server is not None:
            server = self.server - before.server
        client = self.client - before.client
        database = sum(cpu - before.database.get(pid, 0.0) for pid, cpu in self.database.items())
        other = None
        if server is not None and self.system is not None and before.system is not None:
            other = max(0.0, self.system - before.system - server - client - database)
        return {"server": server, "client": client, "database": database, "other": other}


# --- one visitor ---------------------------------------------------------------------------


def parse_sse(buffer: bytes) -> tuple[list[tuple[str, dict[str, Any]]], bytes]:
    """Complete SSE events in `buffer` as (event name, JSON data), and the unparsed rest."""
    events: list[tuple[str, dict[str, Any]]] = []
    buffer = buffer.replace(b"\r\n", b"\n")
    while b"\n\n" in buffer:
        raw, buffer = buffer.split(b"\n\n", 1)
        name, data = "message", b""
        for line in raw.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data += line[5:].strip()
        events.append((name, json.loads(data) if data else {}))
    return events, buffer


def judge_turn(
    events: list[tuple[str, dict[str, Any]]], ttfb_ms: float, ttlb_ms: float
) -> TurnResult:
    """A completed turn holds a final assistant `message` and ends with its `message_end`."""
    assistant = [
        data["message"]
        for name, data in events
        if name == "message" and (data.get("message") or {}).get("role") == "assistant"
    ]
    last_name, last = events[-1] if events else ("", {})
    if last_name != "message_end":
        return TurnResult(ttfb_ms, ttlb_ms, error="stream did not end with message_end")
    if not assistant:
        return TurnResult(ttfb_ms, ttlb_ms, error="no assistant message in stream")
    if last.get("message_id") != assistant[-1].get("id"):
        return TurnResult(ttfb_ms, ttlb_ms, error="message_end does not match the answer")
    meta = assistant[-1].get("meta") or {}
    return TurnResult(
        ttfb_ms,
        ttlb_ms,
        fallback=any(name == "error" for name, _ in events) or bool(meta.get("fallback")),
        answered=bool(meta.get("answered")),
        cached=bool(meta.get("cached")),
    )


def describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    return type(exc).__name__


def visitor_address(index: int) -> str:
    """A distinct client address per visitor, from the benchmarking range 198.18.0.0/15."""
    return str(ipaddress.IPv4Address("198.18.0.1") + index)


async def start_visitor(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> tuple[dict[str, str], str]:
    """A visitor session and a conversation: (the visitor's headers with auth, conversation id)."""
    session = await client.post(f"{API}/sessions", json={"site_id": SITE_ID}, headers=headers)
    session.raise_for_status()
    headers = {**headers, "Authorization": f"Bearer {session.json()['access_token']}"}
    conversation = await client.post(f"{API}/conversations", headers=headers)
    conversation.raise_for_status()
    return headers, str(conversation.json()["id"])


async def chat_turn(
    client: httpx.AsyncClient,
    visitor: dict[str, str],
    conversation_id: str,
    text: str,
    limit_s: float,
) -> TurnResult:
    """Send one message and read its answer stream to the end."""
    body = {"client_id": str(uuid.uuid4()), "text": text}
    headers = {**visitor, "Accept": "text/event-stream"}
    url = f"{API}/conversations/{conversation_id}/messages"
    sent = time.perf_counter()
    ttfb_ms: float | None = None
    events: list[tuple[str, dict[str, Any]]] = []
    buffer = b""
    try:
        async with asyncio.timeout(limit_s):
            async with client.stream("POST", url, json=body, headers=headers) as response:
                response.raise_for_status()
                async for chunk in response.aiter_bytes():
                    if ttfb_ms is None:
                        ttfb_ms = (time.perf_counter() - sent) * 1000
                    parsed, buffer = parse_sse(buffer + chunk)
                    events.extend(parsed)
    except (httpx.HTTPError, TimeoutError, ValueError) as exc:
        phase = "before" if ttfb_ms is None else "after"
        detail = f"{type(exc).__name__} {phase} the first byte: {exc!r}"
        return TurnResult(ttfb_ms, error=describe(exc), detail=detail)
    if ttfb_ms is None:
        return TurnResult(error="empty response")
    return judge_turn(events, ttfb_ms, (time.perf_counter() - sent) * 1000)


def question(cfg: Config, visitor: int, message: int) -> str:
    """The FAQ questions in rotation, or with `distinct_questions` one not asked before."""
    if not cfg.distinct_questions:
        return QUESTIONS[(visitor + message) % len(QUESTIONS)]
    k = visitor * cfg.messages + message
    k, opener = divmod(k, len(OPENERS))
    k, template = divmod(k, len(TEMPLATES))
    topic = TOPICS[k % len(TOPICS)]
    return OPENERS[opener] + TEMPLATES[template].format(topic)


def think_s(rng: random.Random, think_ms: float) -> float:
    return think_ms * rng.uniform(0.5, 1.5) / 1000 if think_ms > 0 else 0.0


async def run_visitor(client: httpx.AsyncClient, cfg: Config, index: int, tally: Tally) -> None:
    rng = random.Random(cfg.seed * 1_000_003 + index)
    await asyncio.sleep(cfg.ramp_s * index / cfg.visitors)
    began = time.perf_counter()
    try:
        own = {} if cfg.same_ip else {"X-Forwarded-For": visitor_address(index)}
        visitor, conversation_id = await start_visitor(client, own)
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        tally.error(f"setup: {describe(exc)}", repr(exc))
        return
    tally.setup_ms.append((time.perf_counter() - began) * 1000)
    for n in range(cfg.messages):
        if n:
            await asyncio.sleep(think_s(rng, cfg.think_ms))
        tally.turns_started += 1
        text = question(cfg, index, n)
        turn = await chat_turn(client, visitor, conversation_id, text, cfg.request_timeout_s)
        tally.add(turn)


# --- the load ------------------------------------------------------------------------------


async def run_load(cfg: Config, server: Server) -> LoadOutcome:
    """All visitors against the server, bounded by `cfg.timeout_s` of wall-clock time."""
    pool = cfg.visitors + 8
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    timeout = httpx.Timeout(cfg.request_timeout_s, connect=min(10.0, cfg.request_timeout_s))
    tally = Tally()
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Origin": ORIGIN}, limits=limits, timeout=timeout, http1=True
    ) as client:
        cpu_before = CpuSnapshot.take(server.pid)
        started = time.perf_counter()
        tasks = [
            asyncio.create_task(run_visitor(client, cfg, i, tally)) for i in range(cfg.visitors)
        ]
        _, pending = await asyncio.wait(tasks, timeout=cfg.timeout_s)
        elapsed = time.perf_counter() - started
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        cpu_used = CpuSnapshot.take(server.pid).since(cpu_before)
        for task in tasks:
            crash = None if task.cancelled() else task.exception()
            if crash is not None:
                tally.error(f"crash: {describe(crash)}", repr(crash))
    return LoadOutcome(tally, elapsed, bool(pending), cpu_used)


# --- the report ----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Linear-interpolated percentile (like numpy's default), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "p99": rounded(percentile(values, 99)),
        "max": rounded(max(values)) if values else None,
    }


def git_revision() -> str:
    """The source revision measured (FD_BENCH_REVISION names it for a tree exported from git)."""
    if os.environ.get("FD_BENCH_REVISION"):
        return os.environ["FD_BENCH_REVISION"]
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def demo_documents() -> list[str]:
    """The files `serve --demo` indexes as the demo knowledge (as frontdesk.demo_site does)."""
    docs = REPO / "docs"
    if not docs.is_dir():
        return []
    files = sorted(p for p in docs.rglob("*.md") if "decisions" not in p.parts)
    readme = [REPO / "README.md"] if (REPO / "README.md").exists() else []
    return [str(p.relative_to(REPO)) for p in readme + files]


def build_report(
    cfg: Config, outcome: LoadOutcome, cpus: tuple[int, int] | None, server_log: dict[str, Any]
) -> dict[str, Any]:
    tally = outcome.tally
    ok = [t for t in tally.turns if t.error is None]
    errors = sum(tally.errors.values())
    elapsed = max(outcome.elapsed_s, 1e-9)
    return {
        "benchmark": "chat_turn",
        "scenario": cfg.scenario,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": machine(),
        "config": {
            "database": cfg.db_kind,
            "visitors": cfg.visitors,
            "messages": cfg.messages,
            "think_ms": cfg.think_ms,
            "ramp_s": cfg.ramp_s,
            "timeout_s": cfg.timeout_s,
            "request_timeout_s": cfg.request_timeout_s,
            "seed": cfg.seed,
            "client_addresses": "127.0.0.1" if cfg.same_ip else "one per visitor (X-Forwarded-For)",
            "questions": "distinct" if cfg.distinct_questions else f"{len(QUESTIONS)} in rotation",
            "demo_knowledge": demo_documents(),
            "pinned": {"server_cpu": cpus[0], "client_cpu": cpus[1]} if cpus else None,
        },
        "results": {
            "turns_planned": cfg.visitors * cfg.messages,
            "turns_started": tally.turns_started,
            "turns_completed": len(ok),
            "errors": errors,
            "error_kinds": dict(tally.errors.most_common()),
            "error_examples": tally.error_examples,
            "fallback_answers": sum(t.fallback for t in ok),
            "knowledge_answers": sum(t.answered for t in ok),
            # Served from the answer cache (the same question to the same site and knowledge).
            "cached_answers": sum(t.cached for t in ok),
            "timed_out": outcome.timed_out,
            "elapsed_s": round(outcome.elapsed_s, 3),
            "turns_per_s": round(len(ok) / elapsed, 2),
            # Little's law: the average number of turns in flight over the run.
            "mean_turns_in_flight": round(sum(t.ttlb_ms or 0 for t in ok) / 1000 / elapsed, 1),
            "ttfb_ms": summary([t.ttfb_ms for t in ok if t.ttfb_ms is not None]),
            "ttlb_ms": summary([t.ttlb_ms for t in ok if t.ttlb_ms is not None]),
            "setup_ms": summary(tally.setup_ms),
            "cpu_s": {name: rounded(value) for name, value in outcome.cpu_s.items()},
            "server_log": server_log,
        },
    }


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg, res = report["config"], report["results"]
    table = Table(title=f"chat_turn  {report['date']}  ({report['git']})")
    columns = ["scenario", "visitors", "msgs", "turns ok", "errors", "fallbacks"]
    columns += ["TTFB p50", "p95", "p99", "TTLB p50", "p95", "p99", "turns/s"]
    for name in columns:
        table.add_column(name, justify="left" if name == "scenario" else "right")
    ttfb, ttlb = res["ttfb_ms"], res["ttlb_ms"]
    table.add_row(
        report["scenario"],
        str(cfg["visitors"]),
        str(cfg["messages"]),
        f"{res['turns_completed']}/{res['turns_planned']}",
        str(res["errors"]),
        str(res["fallback_answers"]),
        *(fmt_ms(ttfb[p]) for p in ("p50", "p95", "p99")),
        *(fmt_ms(ttlb[p]) for p in ("p50", "p95", "p99")),
        f"{res['turns_per_s']:.1f}",
    )
    console = Console(width=max(Console().width, 150))
    console.print(table)
    cpu = "CPU s: " + ", ".join(f"{name} {value}" for name, value in res["cpu_s"].items())
    console.print(f"latencies in ms; wall {res['elapsed_s']} s; {cpu}")
    if res["error_kinds"]:
        console.print(f"errors: {res['error_kinds']}")
    if res["timed_out"]:
        console.print(f"[yellow]stopped at --timeout-s {cfg['timeout_s']}[/yellow]")


def server_log_summary(log_path: Path) -> dict[str, Any]:
    """How much the server logged (at level warning) and how it ended, for the JSON."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    return {
        "lines": len(lines),
        "responder_failed": sum("responder failed" in line for line in lines),
        "tracebacks": sum(line.startswith("Traceback") for line in lines),
        "tail": lines[-10:],
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def run(cfg: Config) -> int:
    cpus = pick_cpus(cfg.pin)
    if cpus is not None:
        os.sched_setaffinity(0, {cpus[1]})
    with (
        bench_database(cfg.database_url) as database_url,
        running_server(database_url, cpus[0] if cpus else None) as server,
    ):
        outcome = asyncio.run(run_load(cfg, server))
        server_log = server_log_summary(server.log_path)
    report = build_report(cfg, outcome, cpus, server_log)
    print_table(report)
    write_json(report, cfg.result_path)
    print(f"wrote {cfg.result_path}")
    return 0 if report["results"]["errors"] == 0 and not outcome.timed_out else 1


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    # Ctrl-C and SIGTERM both unwind through the `finally`s that stop the server and drop the
    # database (SIGINT explicitly too: a shell may have started us with it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return run(cfg)
    except KeyboardInterrupt:
        print("interrupted; the server was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Conversations API benchmark: `/api/v1/conversations` (list and detail) on a large PostgreSQL
database. Budget (issue): p95 ≤ 50 ms with 100k conversations and 1M messages.

* The database (`frontdesk_bench_conv` unless `--database-url` names another) is created on the
  given PostgreSQL server, migrated with `frontdesk migrate`, and seeded by bulk COPY: sites made
  with `frontdesk site create`, then visitors, conversations and messages that keep the app's
  invariants (message `seq` 1..n per conversation without gaps, `last_seq` = n, `last_message_at`
  = the last message's time, one visitor per conversation, closed conversations older than
  open ones, a few conversations with thousands of messages, some conversations sharing one
  `created_at` to the microsecond). Then `VACUUM ANALYZE`. The event log is not seeded: neither
  endpoint reads it.
* A finished seeding is recorded in the database's comment; a later run with the same
  `--conversations/--messages/--sites/--seed` reuses the database (only `frontdesk migrate`
  runs again). The database is dropped at the end unless `--keep` is given.
* A real `frontdesk serve` process runs against it; each scenario gets its own API key from
  `frontdesk apikey create` (a key's rate limit is 1200/minute with bursts of 600, and no scenario
  sends more than 600 requests). Every request is timed on the client over loopback TCP, from
  sending to the end of the body; anything but a 200 counts as an error.

Scenarios: the first page; a 50-page cursor walk from the newest; a walk through the whole list
(`limit=200`), which also checks the keyset pagination (every conversation exactly once, in
order) and yields cursors at every depth; single pages at random depths from those cursors;
filters by site, by `status=open` (walked to its end), by both; the detail of random
conversations and of the longest ones; a few text searches (`q`, a common word and an absent one).
The first page, deep pages and details also run with `--concurrency` clients at once. Each
scenario is bounded by `--requests` and `--scenario-s`, and reports the CPU seconds used meanwhile
by the server, this client, the bench database's PostgreSQL backends and everything else on the
machine (`other`: a busy neighbour when it is not near zero; such numbers are upper bounds).

    .venv/bin/python -m bench.conversations_api                 # 100k conversations, 1M messages
    .venv/bin/python -m bench.conversations_api --conversations 10000 --messages 100000 --keep
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "conversations_api.json"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/frontdesk_bench_conv"
API = "/api/v1/conversations"
BUDGET_P95_MS = 50.0
SPAN = timedelta(days=180)
COPY_BATCH = 50_000
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
VISITOR_LINES = (
    "Hi! Do you ship to Norway?",
    "How long does delivery take to Lyon?",
    "Can I change the size after ordering? I picked M but I think I need L.",
    "What is your return policy for sale items?",
    "Is the blue one in stock?",
    "My order has not arrived yet, the tracking page says it left the warehouse a week ago.",
    "Do you have a discount for students?",
    "thanks!",
)
ASSISTANT_LINES = (
    "Yes, we ship to Norway; delivery takes 3 to 5 working days.",
    "Orders to France usually arrive within 2 working days. You will get a tracking link by "
    "email as soon as the parcel leaves the warehouse.",
    "You can change the size until the order is packed: open the order page and choose "
    "'Change item', or reply here with the order number and the size you want.",
    "Sale items can be returned within 14 days, unworn and with their labels.",
    "The blue one is in stock in every size but XS.",
    "I am sorry for the wait. Could you send me the order number? I will ask the carrier.",
    "Students get 10 % off with a valid student card; see the Discounts page.",
    "You're welcome! Anything else I can help with?",
)


# --- dataset ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    conversations: int
    messages: int
    sites: int
    seed: int

    @property
    def marker(self) -> str:
        """The database comment that says this dataset is completely loaded."""
        return (
            f"frontdesk bench conversations_api: conversations={self.conversations} "
            f"messages={self.messages} sites={self.sites} seed={self.seed}"
        )


def seeded_id(rng: random.Random, prefix: str) -> str:
    """An id in the app's format (`frontdesk.ids`), from the seeded generator."""
    number, digits = rng.getrandbits(128), []
    while number:
        number, rest = divmod(number, 36)
        digits.append(_ALPHABET[rest])
    return f"{prefix}_{''.join(reversed(digits)).rjust(25, '0')}"


def message_counts(rng: random.Random, conversations: int, messages: int) -> list[int]:
    """Messages per conversation, summing to exactly `messages`: mostly short chats (log-normal),
    about 3 % without any message yet, and one in 10,000 with thousands."""
    counts = [0] * conversations
    # A tenth of the messages at most, 5,000 at most per conversation.
    long_ones = conversations // 10_000 if messages >= 2 * conversations else 0
    long_size = min(5000, messages // 10 // long_ones) if long_ones else 0
    chosen = rng.sample(range(conversations), long_ones)
    for index in chosen:
        counts[index] = rng.randint(long_size // 2, long_size)
    rest, long_set = messages - sum(counts), set(chosen)
    weights = [
        0.0 if i in long_set or rng.random() < 0.03 else rng.lognormvariate(0, 0.8)
        for i in range(conversations)
    ]
    total = sum(weights)
    if total == 0:  # a tiny dataset whose every conversation drew "no message yet"
        weights[0] = total = 1.0
    for i, weight in enumerate(weights):
        counts[i] += math.floor(weight / total * rest)
    short = messages - sum(counts)
    candidates = [i for i, w in enumerate(weights) if w > 0]
    for index in rng.choices(candidates, k=short):
        counts[index] += 1
    return counts


@dataclass
class SeedPlan:
    """What was loaded, for the scenarios: sites (largest first) and the longest conversations."""

    site_ids: list[str]
    longest: list[str] = field(default_factory=list)


def _site_weights(sites: int) -> list[float]:
    # Unequal sites: the largest has most of the traffic, the smallest very little.
    raw = [1 / (i + 1) ** 1.5 for i in range(sites)]
    return [w / sum(raw) for w in raw]


def _message_times(seed: int, index: int, created: datetime, count: int) -> list[datetime]:
    """The times of one conversation's messages: the visitor's think time, then the answer's
    latency, alternately. Its own generator, so the conversations pass (which needs the last
    time) and the messages pass (which needs them all) agree without keeping 1M rows in memory."""
    rng = random.Random(seed * 10_000_000 + index)
    times, at = [], created
    for seq in range(1, count + 1):
        if seq % 2:
            at += timedelta(seconds=rng.uniform(5, 60))
        else:
            at += timedelta(milliseconds=rng.randint(300, 4000))
        times.append(at)
    return times


@dataclass
class Generated:
    visitors: list[tuple[Any, ...]]
    conversations: list[tuple[Any, ...]]  # in CONVERSATION_COLUMNS order, oldest first


VISITOR_COLUMNS = (
    "id",
    "site_id",
    "external_user_id",
    "verified",
    "locale",
    "created_at",
    "last_seen_at",
)
CONVERSATION_COLUMNS = (
    "id",
    "site_id",
    "visitor_id",
    "status",
    "channel",
    "handler",
    "assigned_operator_id",
    "last_seq",
    "created_at",
    "updated_at",
    "last_message_at",
)
MESSAGE_COLUMNS = (
    "id",
    "conversation_id",
    "seq",
    "role",
    "text",
    "client_id",
    "reply_to_id",
    "citations",
    "meta",
    "created_at",
)
OPERATOR_ID = "op_bench_operator"


def generate_conversations(dataset: Dataset, site_ids: list[str], anchor: datetime) -> Generated:
    rng = random.Random(dataset.seed)
    n = dataset.conversations
    counts = message_counts(rng, n, dataset.messages)
    start, span_s = anchor - SPAN, int(SPAN.total_seconds())
    moments: list[datetime] = []
    for _ in range(n):
        if moments and rng.random() < 0.02:
            # Two conversations started in the same microsecond (an import, a busy channel): the
            # list must still page through them without losing or repeating one.
            moments.append(moments[-1])
        else:
            moments.append(start + timedelta(microseconds=rng.randrange(span_s * 1_000_000)))
    moments.sort()
    weights = _site_weights(len(site_ids))
    visitors: dict[str, list[Any]] = {}
    by_site: dict[str, list[str]] = {s: [] for s in site_ids}
    conversations: list[tuple[Any, ...]] = []
    for index, created in enumerate(moments):
        site = rng.choices(site_ids, weights)[0]
        if by_site[site] and rng.random() < 0.3:
            visitor_id = rng.choice(by_site[site][-500:])  # a returning visitor
        else:
            visitor_id = seeded_id(rng, "vis")
            visitors[visitor_id] = [visitor_id, site, None, False, None, created, created]
            by_site[site].append(visitor_id)
        recent = anchor - created < timedelta(days=2)
        status = "open" if rng.random() < (0.8 if recent else 0.01) else "closed"
        handler = "operator" if rng.random() < 0.1 else "bot"
        count = counts[index]
        last_message_at = _message_times(dataset.seed, index, created, count)[-1] if count else None
        updated = last_message_at or created
        if status == "closed":
            updated += timedelta(minutes=rng.randint(1, 120))
        visitors[visitor_id][6] = max(visitors[visitor_id][6], updated)
        conversations.append(
            (
                seeded_id(rng, "conv"),
                site,
                visitor_id,
                status,
                "widget",
                handler,
                OPERATOR_ID if handler == "operator" else None,
                count,
                created,
                updated,
                last_message_at,
            )
        )
    return Generated([tuple(v) for v in visitors.values()], conversations)


def generate_messages(
    dataset: Dataset, conversations: list[tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    """Every conversation's messages, seq 1..last_seq, in the conversations' order."""
    rng = random.Random(dataset.seed + 1)
    for index, row in enumerate(conversations):
        conversation_id, handler, count, created = row[0], row[5], row[7], row[8]
        times = _message_times(dataset.seed, index, created, count)
        for seq, at in enumerate(times, start=1):
            if seq % 2:
                role, text = "visitor", rng.choice(VISITOR_LINES)
                client_id: str | None = f"c{rng.getrandbits(64):016x}"
                meta: str | None = None
            else:
                latency = round((at - times[seq - 2]).total_seconds() * 1000)
                text, client_id = rng.choice(ASSISTANT_LINES), None
                if handler == "operator" and seq > 4:
                    role, meta = "operator", json.dumps({"operator_id": OPERATOR_ID})
                else:
                    role, meta = "assistant", json.dumps({"latency_ms": latency})
            yield (
                seeded_id(rng, "msg"),
                conversation_id,
                seq,
                role,
                text,
                client_id,
                None,
                None,
                meta,
                at,
            )


# --- the database --------------------------------------------------------------------------------


def database_urls(url: str) -> tuple[str, str, str]:
    """(asyncpg URL of the bench database, URL of the maintenance database, database name)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
        raise SystemExit(f"--database-url must be a PostgreSQL URL, got {parts.scheme}://")
    name = parts.path.lstrip("/")
    if not name or not name.replace("_", "").isalnum():
        raise SystemExit("--database-url must name a database (letters, digits, '_')")
    base = parts._replace(scheme="postgresql")
    return urlunsplit(base), urlunsplit(base._replace(path="/postgres")), name


async def database_comment(admin_url: str, name: str) -> str | None:
    """The bench database's comment ('' when it has none), or None when it does not exist."""
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT coalesce(shobj_description(oid, 'pg_database'), '') AS comment"
            " FROM pg_database WHERE datname = $1",
            name,
        )
    finally:
        await conn.close()
    return None if row is None else str(row["comment"])


async def recreate_database(admin_url: str, name: str, *, create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def batched(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def load(db_url: str, name: str, dataset: Dataset, site_ids: list[str]) -> dict[str, float]:
    """COPY the generated rows in one transaction, then VACUUM ANALYZE; seconds per step."""
    import asyncpg

    steps: dict[str, float] = {}
    began = time.perf_counter()
    generated = generate_conversations(dataset, site_ids, datetime.now(UTC))
    steps["generate_conversations_s"] = time.perf_counter() - began
    conn = await asyncpg.connect(db_url, timeout=10)
    try:
        began = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(
                "visitors", records=generated.visitors, columns=VISITOR_COLUMNS
            )
            await conn.copy_records_to_table(
                "conversations", records=generated.conversations, columns=CONVERSATION_COLUMNS
            )
            loaded = 0
            for batch in batched(generate_messages(dataset, generated.conversations), COPY_BATCH):
                await conn.copy_records_to_table("messages", records=batch, columns=MESSAGE_COLUMNS)
                loaded += len(batch)
                print(f"\r   messages {loaded:,}/{dataset.messages:,}", end="", flush=True)
            print()
        steps["copy_s"] = time.perf_counter() - began
        began = time.perf_counter()
        # As autovacuum would have done on a live database: statistics and the visibility map.
        await conn.execute("VACUUM (ANALYZE) visitors, conversations, messages")
        steps["vacuum_analyze_s"] = time.perf_counter() - began
        literal = dataset.marker.replace("'", "''")
        await conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{literal}'")
    finally:
        await conn.close()
    return {k: round(v, 1) for k, v in steps.items()}


async def loaded_sites_and_longest(db_url: str) -> tuple[list[str], list[str], int, int]:
    """(bench site ids, largest first; the ten longest conversations; conversations; messages)."""
    import asyncpg

    conn = await asyncpg.connect(db_url, timeout=10)
    try:
        sites = [
            r["id"]
            for r in await conn.fetch(
                "SELECT s.id FROM sites s LEFT JOIN conversations c ON c.site_id = s.id"
                " WHERE s.name LIKE 'Bench site %' GROUP BY s.id ORDER BY count(c.id) DESC, s.id"
            )
        ]
        longest = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM conversations ORDER BY last_seq DESC, id LIMIT 10"
            )
        ]
        conversations = int(await conn.fetchval("SELECT count(*) FROM conversations"))
        messages = int(await conn.fetchval("SELECT count(*) FROM messages"))
    finally:
        await conn.close()
    return sites, longest, conversations, messages


# --- the server ----------------------------------------------------------------------------------


def frontdesk_command() -> str:
    candidate = Path(sys.executable).parent / "frontdesk"
    if not candidate.exists():
        raise SystemExit("the `frontdesk` command is not installed (make install)")
    return str(candidate)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATA_DIR=str(data_dir),
        FRONTDESK_DATABASE_URL=database_url,
        # Fixed, so a kept database stays readable by the next run's server.
        FRONTDESK_SECRET_KEY="frontdesk-bench-conversations-0123456789abcdef",
        FRONTDESK_PUBLIC_URL=f"http://127.0.0.1:{port}",
        FRONTDESK_LOG_LEVEL="warning",
    )
    return env


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [frontdesk_command(), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"frontdesk {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}


def start_server(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [frontdesk_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"frontdesk serve exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(process)
    raise RuntimeError("frontdesk serve did not become healthy in 120 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=grace)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


# --- measuring ------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_cpu_s() -> float | None:
    """CPU seconds every process on the machine has used (not idle or iowait), from /proc/stat."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def database_backends_cpu_s(database: str) -> float:
    """CPU seconds of the PostgreSQL backends serving the bench database (by process title)."""
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres") and f" {database} " in title:
            total += process_cpu_s(int(proc.name)) or 0.0
    return total


@dataclass(frozen=True)
class CpuSnapshot:
    """Where the machine's CPU went: to distinguish a slow server from a busy neighbour."""

    server: float
    client: float
    database: float
    system: float

    @classmethod
    def take(cls, server_pid: int, database: str) -> CpuSnapshot:
        own = os.times()
        return cls(
            server=process_cpu_s(server_pid) or 0.0,
            client=own.user + own.system,
            database=database_backends_cpu_s(database),
            system=system_busy_cpu_s() or 0.0,
        )

    def since(self, before: CpuSnapshot) -> dict[str, float]:
        used = {
            "server": self.server - before.server,
            "client": self.client - before.client,
            "database": self.database - before.database,
        }
        # Backends that closed meanwhile are missed; "other" is an upper bound of the neighbours.
        used["other"] = max(0.0, self.system - before.system - sum(used.values()))
        return {k: round(v, 2) for k, v in used.items()}


@dataclass
class Scenario:
    name: str
    concurrency: int = 1
    timings_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        values = self.timings_ms
        figures = {
            p: None if percentile(values, q) is None else round(percentile(values, q) or 0, 1)
            for p, q in (("p50", 50), ("p95", 95), ("p99", 99))
        }
        p95 = figures["p95"]
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "requests": len(values) + sum(self.errors.values()),
            "ok": len(values),
            "errors": self.errors,
            "latency_ms": figures | {"max": round(max(values), 1) if values else None},
            "requests_per_s": round(len(values) / self.elapsed_s, 1) if self.elapsed_s else None,
            "elapsed_s": round(self.elapsed_s, 2),
            "cpu_s": self.cpu_s,
            "within_budget": p95 is not None and p95 <= BUDGET_P95_MS and not self.errors,
            "notes": self.notes,
        }


class Bench:
    """The scenarios, each with its own API key and its own bounds."""

    def __init__(
        self,
        base: str,
        env: dict[str, str],
        requests: int,
        scenario_s: float,
        server_pid: int,
        database: str,
    ) -> None:
        self.base, self.env = base, env
        self.server_pid, self.database = server_pid, database
        self.requests, self.scenario_s = requests, scenario_s
        self.rng = random.Random(20261122)
        self.results: list[Scenario] = []

    def new_key(self) -> dict[str, str]:
        key = cli(self.env, "apikey", "create", "--scopes", "read", "--name", "bench", "--json")
        return {"Authorization": f"Bearer {key['key']}"}

    async def get(
        self, client: httpx.AsyncClient, scenario: Scenario, path: str, params: dict[str, Any]
    ) -> dict[str, Any] | None:
        began = time.perf_counter()
        try:
            response = await client.get(path, params=params)
            body = response.content
        except httpx.HTTPError as exc:
            key = type(exc).__name__
            scenario.errors[key] = scenario.errors.get(key, 0) + 1
            return None
        took = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            key = str(response.status_code)
            scenario.errors[key] = scenario.errors.get(key, 0) + 1
            return None
        scenario.timings_ms.append(took)
        parsed: dict[str, Any] = json.loads(body)
        return parsed

    async def run(
        self,
        name: str,
        body: Callable[[httpx.AsyncClient, Scenario, float], Awaitable[None]],
        concurrency: int = 1,
    ) -> Scenario:
        scenario = Scenario(name, concurrency)
        headers = self.new_key()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=self.base, headers=headers, timeout=30, limits=limits
        ) as client:
            # One unrecorded request: connections and the key's first-use write are warm.
            await client.get(API, params={"limit": 1})
            cpu = CpuSnapshot.take(self.server_pid, self.database)
            began = time.perf_counter()
            await body(client, scenario, time.monotonic() + self.scenario_s)
            scenario.elapsed_s = time.perf_counter() - began
            scenario.cpu_s = CpuSnapshot.take(self.server_pid, self.database).since(cpu)
        self.results.append(scenario)
        report = scenario.report()
        lat = report["latency_ms"]
        print(
            f"   {name}: {report['ok']} ok, {sum(scenario.errors.values())} errors,"
            f" p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']} max {lat['max']} ms;"
            f" CPU s {scenario.cpu_s}",
            flush=True,
        )
        return scenario

    async def many(
        self,
        client: httpx.AsyncClient,
        scenario: Scenario,
        deadline: float,
        calls: list[tuple[str, dict[str, Any]]],
        concurrency: int,
    ) -> None:
        """The given requests, `concurrency` at a time, until done or the deadline."""
        queue = list(reversed(calls))

        async def worker() -> None:
            while queue and time.monotonic() < deadline:
                path, params = queue.pop()
                await self.get(client, scenario, path, params)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def walk(
        self,
        client: httpx.AsyncClient,
        scenario: Scenario,
        deadline: float,
        params: dict[str, Any],
        max_pages: int,
        budget: list[int],
    ) -> tuple[list[dict[str, Any]], list[str], bool]:
        """Follow `next_cursor` for up to `max_pages` pages: (rows, cursors used, reached end)."""
        rows: list[dict[str, Any]] = []
        cursors: list[str] = []
        cursor: str | None = None
        for _ in range(max_pages):
            if budget[0] <= 0 or time.monotonic() > deadline:
                return rows, cursors, False
            budget[0] -= 1
            page = await self.get(
                client, scenario, API, params | ({"cursor": cursor} if cursor else {})
            )
            if page is None:
                return rows, cursors, False
            rows.extend(page["conversations"])
            cursor = page["next_cursor"]
            if cursor is None:
                return rows, cursors, True
            cursors.append(cursor)
        return rows, cursors, False


def check_order(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Keyset pagination's promise: strictly newest first by (created_at, id), nothing twice."""
    keys = [(datetime.fromisoformat(r["created_at"]), r["id"]) for r in rows]
    out_of_order = sum(1 for a, b in pairwise(keys) if not a > b)
    ties = sum(1 for a, b in pairwise(keys) if a[0] == b[0])
    return {
        "rows": len(rows),
        "distinct": len({r["id"] for r in rows}),
        "out_of_order": out_of_order,
        "equal_created_at_neighbours": ties,
    }


async def run_scenarios(
    bench: Bench, site_ids: list[str], longest: list[str], total: int, concurrency: int
) -> None:
    n = bench.requests
    first: list[tuple[str, dict[str, Any]]] = [(API, {"limit": 50})] * n

    async def first_page(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
        await bench.many(client, sc, deadline, first, 1)

    async def first_page_concurrent(
        client: httpx.AsyncClient, sc: Scenario, deadline: float
    ) -> None:
        await bench.many(client, sc, deadline, first, concurrency)

    async def walk_50_pages(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
        budget, walks = [n], []
        while budget[0] > 0 and time.monotonic() < deadline:
            rows, _, _ = await bench.walk(client, sc, deadline, {"limit": 50}, 50, budget)
            walks.append(check_order(rows))
        sc.notes["walks"] = walks

    whole: dict[str, list[str]] = {"cursors": [], "ids": []}

    async def walk_everything(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
        # Capped below the key's burst; a larger dataset is walked only in part (said in notes).
        budget = [min(total // 200 + 2, 590)]
        rows, cursors, end = await bench.walk(
            client, sc, deadline, {"limit": 200}, budget[0], budget
        )
        sc.notes.update(check_order(rows), reached_end=end, conversations_in_database=total)
        whole["cursors"], whole["ids"] = cursors, [r["id"] for r in rows]

    await bench.run("first page", first_page)
    await bench.run(f"first page, {concurrency} at once", first_page_concurrent, concurrency)
    await bench.run("cursor walk, 50 pages from the newest", walk_50_pages)
    await bench.run("whole list, limit=200", walk_everything)

    deep = [(API, {"limit": 50, "cursor": bench.rng.choice(whole["cursors"])}) for _ in range(n)]
    if whole["cursors"]:

        async def deep_pages(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
            await bench.many(client, sc, deadline, deep, 1)

        async def deep_concurrent(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
            await bench.many(client, sc, deadline, deep, concurrency)

        await bench.run("page at a random depth", deep_pages)
        await bench.run(
            f"page at a random depth, {concurrency} at once", deep_concurrent, concurrency
        )

    async def by_site(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
        budget, index = [n], 0
        while budget[0] > 0 and time.monotonic() < deadline:
            site = site_ids[index % len(site_ids)]
            index += 1
            rows, _, _ = await bench.walk(
                client, sc, deadline, {"site_id": site, "limit": 50}, 10, budget
            )
            sc.notes.setdefault("walks", []).append({"site_id": site} | check_order(rows))

    async def open_only(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
        budget = [n]
        while budget[0] > 0 and time.monotonic() < deadline:
            rows, _, end = await bench.walk(
                client, sc, deadline, {"status": "open", "limit": 50}, n, budget
            )
            closed = sum(1 for r in rows if r["status"] != "open")
            sc.notes.setdefault("walks", []).append(
                check_order(rows) | {"reached_end": end, "not_open": closed}
            )

    async def site_and_open(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
        budget, index = [n], 0
        while budget[0] > 0 and time.monotonic() < deadline:
            site = site_ids[index % len(site_ids)]
            index += 1
            params = {"site_id": site, "status": "open", "limit": 50}
            rows, _, end = await bench.walk(client, sc, deadline, params, n, budget)
            wrong = sum(1 for r in rows if r["status"] != "open" or r["site_id"] != site)
            sc.notes.setdefault("walks", []).append(
                {"site_id": site, "reached_end": end, "not_matching": wrong} | check_order(rows)
            )

    await bench.run("site_id filter, 10 pages per site", by_site)
    await bench.run("status=open, walked to the end", open_only)
    await bench.run("site_id + status=open, walked to the end", site_and_open)

    if whole["ids"]:
        details: list[tuple[str, dict[str, Any]]] = [
            (f"{API}/{bench.rng.choice(whole['ids'])}", {}) for _ in range(n)
        ]

        async def detail(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
            await bench.many(client, sc, deadline, details, 1)

        async def detail_concurrent(
            client: httpx.AsyncClient, sc: Scenario, deadline: float
        ) -> None:
            await bench.many(client, sc, deadline, details, concurrency)

        await bench.run("detail of a random conversation", detail)
        await bench.run(
            f"detail of a random conversation, {concurrency} at once",
            detail_concurrent,
            concurrency,
        )

    async def detail_longest(client: httpx.AsyncClient, sc: Scenario, deadline: float) -> None:
        shown: dict[str, tuple[int, int]] = {}
        for i in range(max(1, n // 2)):
            if time.monotonic() > deadline:
                break
            body = await bench.get(client, sc, f"{API}/{longest[i % len(longest)]}", {})
            if body is not None:
                shown[body["id"]] = (body["last_seq"], len(body["messages"]))
        sc.notes["last_seq_and_messages_returned"] = sorted(shown.values(), reverse=True)

    await bench.run("detail of the 10 longest conversations", detail_longest)

    # Text search reads messages, not the list's indexes: a few requests, to show its cost.
    searches = max(1, n // 10)
    for term in ("student", "zebra"):

        async def search(
            client: httpx.AsyncClient, sc: Scenario, deadline: float, term: str = term
        ) -> None:
            await bench.many(client, sc, deadline, [(API, {"q": term, "limit": 50})] * searches, 1)

        await bench.run(f"q={term} (text search)", search)


# --- the report -----------------------------------------------------------------------------------


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
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def print_table(scenarios: list[dict[str, Any]]) -> None:
    header = ("scenario", "ok", "errors", "p50", "p95", "p99", "max", "req/s", "p95≤50", "other")
    width = max(len(s["name"]) for s in scenarios)
    print(f"{header[0]:<{width}} " + " ".join(f"{h:>7}" for h in header[1:]))
    for s in scenarios:
        lat = s["latency_ms"]
        cells = (
            s["ok"],
            sum(s["errors"].values()),
            lat["p50"],
            lat["p95"],
            lat["p99"],
            lat["max"],
            s["requests_per_s"],
            "yes" if s["within_budget"] else "NO",
            s["cpu_s"].get("other"),
        )
        print(f"{s['name']:<{width}} " + " ".join(f"{c!s:>7}" for c in cells))


async def check_invariants(db_url: str) -> dict[str, int]:
    """The seeded rows keep what the app keeps: seq 1..n without gaps, last_seq = n,
    last_message_at = the last message's time (counted as violations, expected 0)."""
    import asyncpg

    conn = await asyncpg.connect(db_url, timeout=10)
    try:
        row = await conn.fetchrow(
            """
            SELECT
              count(*) FILTER (WHERE m.n IS NULL AND c.last_seq <> 0) AS missing_messages,
              count(*) FILTER (WHERE m.n IS NOT NULL AND (m.lo <> 1 OR m.hi <> m.n
                               OR c.last_seq <> m.n)) AS seq_gaps,
              count(*) FILTER (WHERE c.last_message_at IS DISTINCT FROM m.last_at)
                AS wrong_last_message_at,
              count(*) FILTER (WHERE c.updated_at < c.created_at) AS updated_before_created
            FROM conversations c
            LEFT JOIN (
              SELECT conversation_id, count(*) AS n, min(seq) AS lo, max(seq) AS hi,
                     max(created_at) AS last_at
              FROM messages GROUP BY conversation_id
            ) m ON m.conversation_id = c.id
            """
        )
    finally:
        await conn.close()
    return {k: int(v) for k, v in dict(row).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200, help="per scenario (at most 580)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scenario-s", type=float, default=60, help="time bound per scenario")
    parser.add_argument("--reseed", action="store_true", help="seed even if already seeded")
    parser.add_argument("--keep", action="store_true", help="keep the database (reused next run)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 580:
        parser.error("--requests must be 1..580 (one API key's burst is 600)")
    if args.conversations < 1 or args.messages < 0 or not 1 <= args.sites <= 50:
        parser.error("--conversations ≥ 1, --messages ≥ 0, --sites 1..50")
    dataset = Dataset(args.conversations, args.messages, args.sites, args.seed)
    db_url, admin_url, name = database_urls(args.database_url)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: the server stops, the database goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="fd-bench-conv-") as tmp:
        port = free_port()
        env = server_env(Path(tmp), db_url, port)
        try:
            return _measure(args, dataset, env, db_url, admin_url, name, Path(tmp), port)
        finally:
            if not args.keep:
                asyncio.run(recreate_database(admin_url, name, create=False))
                print(f"dropped database {name} (--keep keeps it)")


def _measure(
    args: argparse.Namespace,
    dataset: Dataset,
    env: dict[str, str],
    db_url: str,
    admin_url: str,
    name: str,
    data_dir: Path,
    port: int,
) -> int:
    seeding: dict[str, Any] = {"reused": False}
    comment = asyncio.run(database_comment(admin_url, name))
    if comment == dataset.marker and not args.reseed:
        seeding["reused"] = True
        print(f"== reusing database {name} ({comment})")
    else:
        print(
            f"== seeding database {name}: {dataset.conversations:,} conversations, "
            f"{dataset.messages:,} messages, {dataset.sites} sites"
        )
        asyncio.run(recreate_database(admin_url, name, create=True))
    began = time.perf_counter()
    cli(env, "migrate")
    seeding["migrate_s"] = round(time.perf_counter() - began, 1)
    if not seeding["reused"]:
        site_ids = [
            cli(
                env,
                "site",
                "create",
                "--name",
                f"Bench site {i + 1}",
                "--origin",
                f"https://site{i + 1}.bench.example",
                "--json",
            )["site_id"]
            for i in range(dataset.sites)
        ]
        seeding |= asyncio.run(load(db_url, name, dataset, site_ids))
        seeding["invariant_violations"] = asyncio.run(check_invariants(db_url))
        if any(seeding["invariant_violations"].values()):
            raise SystemExit(f"seeded rows break the invariants: {seeding}")
        print(f"   seeded: {seeding}")
    site_ids, longest, conversations, messages = asyncio.run(loaded_sites_and_longest(db_url))
    if (conversations, messages) != (dataset.conversations, dataset.messages):
        raise SystemExit(f"the database holds {conversations} / {messages}, not the dataset")
    print("== frontdesk serve")
    process = start_server(env, port, data_dir / "server.log")
    bench = Bench(
        f"http://127.0.0.1:{port}", env, args.requests, args.scenario_s, process.pid, name
    )
    try:
        asyncio.run(run_scenarios(bench, site_ids, longest, conversations, args.concurrency))
    finally:
        stop_server(process)
    scenarios = [s.report() for s in bench.results]
    report = {
        "benchmark": "conversations_api",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": git_revision(),
        "database": "postgresql",
        "dataset": {
            "conversations": conversations,
            "messages": messages,
            "sites": dataset.sites,
            "seed": dataset.seed,
        },
        "seeding": seeding,
        "machine": machine(),
        "budget_p95_ms": BUDGET_P95_MS,
        "requests_per_scenario": args.requests,
        "scenarios": scenarios,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print_table(scenarios)
    print(f"written {args.output}")
    pagination_ok = all(
        s["notes"].get("out_of_order", 0) == 0
        and s["notes"].get("rows", 0) == s["notes"].get("distinct", 0)
        for s in scenarios
    )
    return 0 if pagination_ok and all(not s["errors"] for s in scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Webhook delivery benchmark: deliveries per second, and enqueue → delivered latency at a set rate.

A real `frontdesk serve` (its in-process worker delivering) and a real receiver process on
loopback. Widget events go in through the widget API; each carries its send time and becomes an
event, a delivery and a signed POST to the receiver, which writes down the `webhook-id`, the send
time and its own receive time. Each run has two phases:

* burst: `--events` events posted as fast as one client can (50 to a request). Throughput is
  distinct deliveries / (last receipt − first send): the whole path, fan-out included.
* paced: `--rate` events per second for `--paced-s` seconds, posted every 20 ms. Latency is
  receipt − send per delivery (p50/p95/p99/max); it includes the widget request that records the
  event, so it is a little over enqueue → delivered. (Latency of a burst only measures how long
  the queue was, which is why the phases are separate.)

Budgets (issue): ≥ 500 deliveries/s, p99 ≤ 1 s at 500 events/s. Bounded: `--events` ≤ 20,000,
`--paced-s` ≤ 60, and every wait ends at `--timeout-s`. Loopback only. With `--database-url` a
fresh PostgreSQL database `fd_bench_webhooks` is created on that server and dropped afterwards.
The table is printed; the JSON goes to bench/results/webhooks-<database>.json.

    .venv/bin/python -m bench.webhooks --runs 3
    .venv/bin/python -m bench.webhooks --runs 3 --database-url postgresql://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

VENV_BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
ORIGIN = "http://bench.local"
BENCH_DATABASE = "fd_bench_webhooks"
MAX_EVENTS = 20_000
MAX_PACED_S = 60.0
TICK_S = 0.02
# A visitor may post 60 event batches at once (then one a second); each phase takes fresh ones.
REQUESTS_PER_VISITOR = 50

RECEIVER = r"""
import json, sys, time, uvicorn
out = open(sys.argv[2], "a", buffering=1)
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    now = time.time()
    headers = dict(scope["headers"])
    try:
        data = json.loads(body)["data"]["data"]
        hook_id = headers[b"webhook-id"].decode()
        out.write(f"{hook_id} {data['phase']} {data['t']} {now}\n")
    except Exception:
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(VENV_BIN / "frontdesk"), *args], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout) if done.stdout.strip() else {}


def wait_up(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


# --- database --------------------------------------------------------------------------------


def _urls(url: str) -> tuple[str, str]:
    """(URL of the bench database for the server, URL of the maintenance database)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
        raise SystemExit(f"--database-url must be a PostgreSQL URL, got {parts.scheme}://")
    server = parts._replace(scheme="postgresql+asyncpg", path=f"/{BENCH_DATABASE}")
    admin = parts._replace(scheme="postgresql", path="/postgres")
    return urlunsplit(server), urlunsplit(admin)


async def _recreate(admin_url: str, *, create: bool) -> None:
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
    if url is None:
        yield None
        return
    server_url, admin_url = _urls(url)
    asyncio.run(_recreate(admin_url, create=True))
    try:
        yield server_url
    finally:
        asyncio.run(_recreate(admin_url, create=False))


# --- load ------------------------------------------------------------------------------------


class Visitors:
    """Widget sessions, each used for at most REQUESTS_PER_VISITOR posts (the rate limit)."""

    def __init__(self, http: httpx.AsyncClient, site_id: str) -> None:
        self.http = http
        self.site_id = site_id
        self.auth: dict[str, str] = {}
        self.used = REQUESTS_PER_VISITOR

    async def post(self, events: list[dict[str, Any]]) -> None:
        if self.used >= REQUESTS_PER_VISITOR:
            started = await self.http.post(
                "/api/widget/v1/sessions", json={"site_id": self.site_id}
            )
            started.raise_for_status()
            self.auth = {"Authorization": f"Bearer {started.json()['access_token']}"}
            self.used = 0
        self.used += 1
        response = await self.http.post(
            "/api/widget/v1/events", json={"events": events}, headers=self.auth
        )
        response.raise_for_status()


def tick(phase: str, count: int) -> list[dict[str, Any]]:
    now = time.time()
    return [{"type": "bench.tick", "data": {"t": now, "phase": phase}} for _ in range(count)]


async def burst(visitors: Visitors, phase: str, events: int, deadline: float) -> int:
    sent = 0
    while sent < events and time.time() < deadline:
        batch = min(50, events - sent)
        await visitors.post(tick(phase, batch))
        sent += batch
    return sent


async def paced(
    visitors: Visitors, phase: str, rate: float, seconds: float, deadline: float
) -> int:
    """`rate` events a second, posted every TICK_S; a late tick posts what is due (≤ 50)."""
    started = time.time()
    sent = 0
    while True:
        now = time.time()
        if now - started >= seconds or now >= deadline:
            return sent
        due = min(50, int((now - started) * rate) - sent)
        if due > 0:
            await visitors.post(tick(phase, due))
            sent += due
        await asyncio.sleep(max(0.0, TICK_S - (time.time() - now)))


def cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def receipts(path: Path, phase: str) -> dict[str, tuple[float, float]]:
    """webhook-id → (sent, first receipt) for one phase; a repeated id is a duplicate."""
    found: dict[str, tuple[float, float]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[1] == phase:
            found.setdefault(parts[0], (float(parts[2]), float(parts[3])))
    return found


def wait_for(path: Path, phase: str, count: int, deadline: float) -> dict[str, tuple[float, float]]:
    while True:
        got = receipts(path, phase)
        if len(got) >= count or time.time() >= deadline:
            return got
        time.sleep(0.1)


def summarise(got: dict[str, tuple[float, float]], sent: int, cpu: float) -> dict[str, Any]:
    latencies = [received - at for at, received in got.values()]
    result: dict[str, Any] = {"sent": sent, "delivered": len(got)}
    # Server CPU per delivery, load generation included: what one free core would sustain.
    result["server_cpu_ms_per_delivery"] = round(cpu * 1000 / max(1, len(got)), 2)
    if latencies:
        first = min(at for at, _ in got.values())
        last = max(received for _, received in got.values())
        result["deliveries_per_s"] = round(len(got) / max(1e-9, last - first), 1)
        result["latency_ms"] = {
            p: round(percentile(latencies, float(p[1:])) * 1000, 1) for p in ("p50", "p95", "p99")
        } | {"max": round(max(latencies) * 1000, 1)}
    return result


# --- runs ------------------------------------------------------------------------------------


def one_run(
    base: str, site_id: str, args: argparse.Namespace, log: Path, run: int, server_pid: int
) -> dict[str, Any]:
    deadline = time.time() + args.timeout_s

    async def load(phase: str) -> int:
        async with httpx.AsyncClient(base_url=base, timeout=30, headers={"Origin": ORIGIN}) as h:
            visitors = Visitors(h, site_id)
            if phase.startswith("burst"):
                return await burst(visitors, phase, args.events, deadline)
            return await paced(visitors, phase, args.rate, args.paced_s, deadline)

    burst_phase, paced_phase = f"burst{run}", f"paced{run}"
    cpu = cpu_s(server_pid)
    sent = asyncio.run(load(burst_phase))
    got = wait_for(log, burst_phase, sent, deadline)
    burst_result = summarise(got, sent, cpu_s(server_pid) - cpu)
    cpu = cpu_s(server_pid)
    sent = asyncio.run(load(paced_phase))
    got = wait_for(log, paced_phase, sent, deadline)
    paced_result = summarise(got, sent, cpu_s(server_pid) - cpu)
    return {"burst": burst_result, "paced": paced_result}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=3000, help="events in the burst phase")
    parser.add_argument("--rate", type=float, default=500, help="events/s in the paced phase")
    parser.add_argument("--paced-s", type=float, default=10, help="length of the paced phase")
    parser.add_argument("--runs", type=int, default=1, help="burst + paced runs on one server")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server to use")
    parser.add_argument("--timeout-s", type=float, default=120, help="bound of each phase")
    args = parser.parse_args()
    args.events = max(1, min(args.events, MAX_EVENTS))
    args.paced_s = max(1.0, min(args.paced_s, MAX_PACED_S))
    data = Path(tempfile.mkdtemp(prefix="fd-bench-hooks-"))
    log = data / "receipts.txt"
    port, receiver_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATA_DIR=str(data),
        FRONTDESK_PUBLIC_URL=f"http://127.0.0.1:{port}",
        FRONTDESK_PORT=str(port),
        FRONTDESK_HOST="127.0.0.1",
        FRONTDESK_LOG_LEVEL="warning",
        FRONTDESK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
    )
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    with bench_database(args.database_url) as database_url:
        if database_url:
            env["FRONTDESK_DATABASE_URL"] = database_url
        site = cli(env, "site", "create", "--name", "Bench", "--origin", ORIGIN, "--json")
        key = cli(env, "apikey", "create", "--scopes", "admin", "--json")["key"]
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(receiver_port), str(log)])
        server = subprocess.Popen([str(VENV_BIN / "frontdesk"), "serve"], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_up(f"{base}/health")
            wait_up(f"http://127.0.0.1:{receiver_port}/")
            httpx.post(
                f"{base}/api/v1/webhooks",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "url": f"http://127.0.0.1:{receiver_port}/hook",
                    "events": ["widget.event"],
                    "site_id": site["site_id"],
                },
            ).raise_for_status()
            for run in range(1, args.runs + 1):
                runs.append(one_run(base, site["site_id"], args, log, run, server.pid))
        finally:
            for process in (server, receiver):
                process.terminate()
                process.wait(timeout=30)
    database = "postgresql" if args.database_url else "sqlite"
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": database,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "parameters": {
            "events": args.events,
            "rate": args.rate,
            "paced_s": args.paced_s,
            "runs": args.runs,
        },
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"webhooks-{database}.json"
    out.write_text(json.dumps(result, indent=2))
    header = (
        "run",
        "phase",
        "sent",
        "delivered",
        "per s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "cpu ms/d",
    )
    print(" ".join(f"{h:>10}" for h in header))
    for number, run_result in enumerate(runs, 1):
        for phase in ("burst", "paced"):
            row = run_result[phase]
            lat = row.get("latency_ms", {})
            cells = (
                f"{database[:6]}#{number}",
                phase,
                row["sent"],
                row["delivered"],
                row.get("deliveries_per_s", "-"),
                *(lat.get(k, "-") for k in ("p50", "p95", "p99", "max")),
                row["server_cpu_ms_per_delivery"],
            )
            print(" ".join(f"{c!s:>10}" for c in cells))
    print(f"load average {result['machine']['load_average_after']}; written {out}")


if __name__ == "__main__":
    main()

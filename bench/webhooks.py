"""Webhook delivery benchmark: deliveries per second and enqueue → delivered latency.

A real `frontdesk serve` (its in-process worker delivering) and a real receiver process on
loopback. Widget events are posted in batches of 50; each carries its send time, each becomes an
event, a delivery and a signed POST to the receiver, which records (receive time − send time).
Reported: deliveries/s over the whole run and p50/p95/p99/max latency. Budgets (issue): ≥ 500
deliveries/s, p99 ≤ 1 s.

    .venv/bin/python -m bench.webhooks --events 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

VENV_BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
ORIGIN = "http://bench.local"

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
    try:
        sent = json.loads(body)["data"]["data"]["t"]
        out.write(f"{now - sent}\n")
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


async def load(base: str, site_id: str, events: int, timeout_s: float) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=30, headers={"Origin": ORIGIN}) as http:
        session = (await http.post("/api/widget/v1/sessions", json={"site_id": site_id})).json()
        auth = {"Authorization": f"Bearer {session['access_token']}"}
        started = time.time()
        sent = 0
        while sent < events and time.time() - started < timeout_s:
            batch = min(50, events - sent)
            body = {
                "events": [{"type": "bench.tick", "data": {"t": time.time()}} for _ in range(batch)]
            }
            response = await http.post("/api/widget/v1/events", json=body, headers=auth)
            response.raise_for_status()
            sent += batch
        return started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--timeout-s", type=float, default=120)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="fd-bench-hooks-"))
    latencies_file = data / "latencies.txt"
    port, receiver_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATA_DIR=str(data),
        FRONTDESK_PUBLIC_URL=f"http://127.0.0.1:{port}",
        FRONTDESK_PORT=str(port),
        FRONTDESK_LOG_LEVEL="warning",
        FRONTDESK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        FRONTDESK_JOB_POLL_S="0.2",
    )
    if args.database_url:
        env["FRONTDESK_DATABASE_URL"] = args.database_url
    site_id = cli(env, "site", "create", "--name", "Bench", "--origin", ORIGIN, "--json")["site_id"]
    key = cli(env, "apikey", "create", "--scopes", "admin", "--json")["key"]
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(receiver_port), str(latencies_file)]
    )
    server = subprocess.Popen([str(VENV_BIN / "frontdesk"), "serve"], env=env)
    try:
        wait_up(f"http://127.0.0.1:{port}/health")
        wait_up(f"http://127.0.0.1:{receiver_port}/")
        httpx.post(
            f"http://127.0.0.1:{port}/api/v1/webhooks",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "url": f"http://127.0.0.1:{receiver_port}/hook",
                "events": ["widget.event"],
                "site_id": site_id,
            },
        ).raise_for_status()
        # Per-visitor event limits would throttle the load generator, not the deliveries.
        started = asyncio.run(
            load(f"http://127.0.0.1:{port}", site_id, args.events, args.timeout_s)
        )
        deadline = time.time() + args.timeout_s
        latencies: list[float] = []
        while time.time() < deadline:
            latencies = (
                [float(x) for x in latencies_file.read_text().split()]
                if latencies_file.exists()
                else []
            )
            if len(latencies) >= args.events:
                break
            time.sleep(0.2)
        finished = started + max(latencies) if latencies else time.time()
        result = {
            "events": args.events,
            "delivered": len(latencies),
            "database": "postgresql" if args.database_url else "sqlite",
            "deliveries_per_s": round(len(latencies) / max(1e-9, finished - started), 1),
            "latency_ms": {
                p: round(percentile(latencies, float(p[1:])) * 1000, 1)
                for p in ("p50", "p95", "p99")
            }
            | {"max": round(max(latencies) * 1000, 1)}
            if latencies
            else {},
        }
    finally:
        for process in (server, receiver):
            process.terminate()
            process.wait(timeout=15)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"webhooks-{result['database']}.json"
    out.write_text(json.dumps(result, indent=2))
    lat = result["latency_ms"]
    header = ("database", "events", "delivered", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms")
    row = (
        result["database"],
        result["events"],
        result["delivered"],
        result["deliveries_per_s"],
        *(lat.get(k, "-") for k in ("p50", "p95", "p99", "max")),
    )
    print(" ".join(f"{h:>10}" for h in header))
    print(" ".join(f"{v!s:>10}" for v in row))
    print(f"written {out}")


if __name__ == "__main__":
    main()

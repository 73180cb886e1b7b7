"""Observability overhead: what tracing and response compression cost per request.

The app runs in process (httpx's ASGI transport, SQLite in a temporary directory), so the figures
are the app's own work without network: the request-id middleware, the compression middleware,
and, when on, OpenTelemetry's server, SQL and our own spans, exported to memory (the OTLP
exporter's batching runs on its own thread and is left out on purpose). The request is
`GET /api/v1/errors?limit=200` over 200 stored error groups: one SELECT and a large JSON body.

For each setup, `--requests` requests run one after another after a warm-up; the table shows
median and p95 latency, the median CPU time of the process per request (steadier than latency on
a shared machine) and the body size on the wire.

    .venv/bin/python -m bench.observability
    .venv/bin/python -m bench.observability --requests 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.actions.errors import ErrorReport, do_record_error
from frontdesk.config import load_settings
from frontdesk.db import Database
from frontdesk.main import create_app
from frontdesk.migrate import upgrade
from frontdesk.models import utcnow
from frontdesk.observability import tracing

RESULTS = Path(__file__).parent / "results" / "observability.json"


async def seed(data_dir: Path) -> str:
    settings = load_settings(data_dir=data_dir, secret_key="bench-secret-" + "x" * 32)
    db = Database(settings)
    await upgrade(db)
    now = utcnow()
    async with db.session_scope() as session:
        for i in range(200):
            sample = {
                "data": {"message": f"failure {i}", "stack": "TypeError: x\n    at f (a.js:1:2)"}
            }
            # Letters, not numbers: numbers are normalised away and would make one group.
            name = chr(97 + i // 26) + chr(97 + i % 26)
            report = ErrorReport("widget", None, "TypeError", f"failure in {name}", "", sample)
            await do_record_error(session, report, at=now - timedelta(seconds=i))
        created = await do_create_api_key(session, scopes=["read"])
    await db.dispose()
    return created.key


async def measure(
    data_dir: Path, key: str, *, traced: bool, encoding: str, requests: int
) -> dict[str, Any]:
    settings = load_settings(data_dir=data_dir, secret_key="bench-secret-" + "x" * 32)
    app = create_app(settings)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.default_sampler())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if traced:
        tracing.install_tracing(app, app.state.services.db, provider)
    headers = {"Authorization": f"Bearer {key}", "Accept-Encoding": encoding}
    timings: list[float] = []
    cpu_timings: list[float] = []
    wire = 0
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                for i in range(requests + 50):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    response = await http.get("/api/v1/errors?limit=200", headers=headers)
                    elapsed = time.perf_counter() - started
                    cpu = time.process_time() - cpu_started
                    assert response.status_code == 200, response.text
                    wire = response.num_bytes_downloaded
                    if i >= 50:
                        timings.append(elapsed * 1000)
                        cpu_timings.append(cpu * 1000)
                    exporter.clear()
    finally:
        if traced:
            tracing.uninstall_tracing(app)
        provider.shutdown()
    timings.sort()
    return {
        "tracing": "on" if traced else "off",
        "accept_encoding": encoding,
        "wire_bytes": wire,
        "median_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 2),
        "cpu_median_ms": round(statistics.median(cpu_timings), 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        key = await seed(data_dir)
        for traced, encoding in (
            (False, "identity"),
            (True, "identity"),
            (False, "gzip"),
            (False, "br"),
            (False, "zstd"),
        ):
            rows.append(
                await measure(
                    data_dir, key, traced=traced, encoding=encoding, requests=args.requests
                )
            )
    print(
        f"{'tracing':8} {'encoding':9} {'bytes':>8} {'median ms':>10} {'p95 ms':>8} {'cpu ms':>7}"
    )
    for row in rows:
        print(
            f"{row['tracing']:8} {row['accept_encoding']:9} {row['wire_bytes']:>8} "
            f"{row['median_ms']:>10} {row['p95_ms']:>8} {row['cpu_median_ms']:>7}"
        )
    result = {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "requests": args.requests,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())

"""CPU per chat turn inside one process: the widget API called through ASGI, no sockets.

What it measures: the server-side CPU a turn costs (middleware, authentication, limits, the
stored visitor message, the answer from the knowledge responder or the answer cache, the stored
answer, the job worker's passes over the new events), without the HTTP parser, the network or a
client competing for the core. It complements `bench/chat_turn.py` (what a visitor waits for over
real TCP): when that one queues, this one says how much work each turn is.

The app is FrontDesk's own (`create_app`) on a fresh SQLite data directory (or the PostgreSQL
database given by `--database-url`), with the demo site: answering from the answer cache, or with
`--openai` through an OpenAI-compatible fake upstream in its own process (as in
`bench/responders.py`). Each of `--visitors` visitors starts a session and a conversation, then
the turns run one after the other, every request driven straight through the ASGI interface.
`--profile` writes a cProfile of the measured turns.

    .venv/bin/python -m bench.turn_cpu --turns 600
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.responders import upstream_fake, xff
from frontdesk.config import load_settings
from frontdesk.db import Database
from frontdesk.demo_site import DEMO_SITE_ID
from frontdesk.main import create_app
from frontdesk.migrate import upgrade
from frontdesk.models import Site
from frontdesk.responders.config import seal_responder
from frontdesk.security.limits_policy import SITE_KEYS

QUESTIONS = [
    "How do I install FrontDesk?",
    "What is the widget?",
    "How do webhooks work?",
    "Can I use Dify?",
    "What are rate limits?",
    "How do I add documents?",
]
ORIGIN = "http://127.0.0.1:8000"


async def call(
    app: Any, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One request through the ASGI interface; the whole body is read."""
    raw = orjson.dumps(body) if body is not None else b""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-length", str(len(raw)).encode()), (b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def answer_upstream(app: Any, base_url: str) -> None:
    """The demo site answers through the OpenAI-compatible fake (no answer cache)."""
    services = app.state.services
    responder = {"kind": "openai", "base_url": base_url, "api_key": "sk-bench", "model": "m"}
    async with services.db.session_scope() as session:
        site = await session.get(Site, DEMO_SITE_ID)
        site.responder = seal_responder(responder, services.box)
        site.options = {**(site.options or {}), "answer_cache": False}
    services.sites.invalidate(DEMO_SITE_ID)


async def lift_limits(app: Any) -> None:
    """The limits are still checked on every turn, but one process sending as fast as it can
    must not be refused."""
    services = app.state.services
    unlimited = {name: "100000/second" for name in SITE_KEYS} | {
        burst: 100000 for burst in SITE_KEYS.values()
    }
    async with services.db.session_scope() as session:
        site = await session.get(Site, DEMO_SITE_ID)
        site.limits = unlimited
    services.sites.invalidate(DEMO_SITE_ID)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fd-turn-cpu-") as tmp:
        overrides: dict[str, Any] = {
            "data_dir": Path(tmp),
            "public_url": "http://127.0.0.1:8000",
            "seed_demo": True,
            "log_level": "warning",
            # Each visitor comes from its own address (X-Forwarded-For), as on a real site: one
            # address may start only so many sessions a minute.
            "trusted_proxies": "127.0.0.1",
        }
        if args.database_url:
            overrides["database_url"] = args.database_url
        settings = load_settings(**overrides)
        db = Database(settings)
        await upgrade(db)
        await db.dispose()
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await lift_limits(app)
            if args.upstream:
                await answer_upstream(app, args.upstream)
            headers = {"Origin": ORIGIN, "Content-Type": "application/json"}
            visitors = []
            for v in range(args.visitors):
                address = xff(v)
                status, body = await call(
                    app,
                    "POST",
                    "/api/widget/v1/sessions",
                    {"site_id": "site_demo"},
                    {**headers, "X-Forwarded-For": address},
                )
                assert status == 201, (status, body)
                token = orjson.loads(body)["access_token"]
                auth = {**headers, "X-Forwarded-For": address, "Authorization": f"Bearer {token}"}
                status, body = await call(app, "POST", "/api/widget/v1/conversations", {}, auth)
                assert status == 201, (status, body)
                visitors.append((auth, orjson.loads(body)["id"]))

            async def turn(i: int) -> None:
                auth, conversation = visitors[i % len(visitors)]
                status, body = await call(
                    app,
                    "POST",
                    f"/api/widget/v1/conversations/{conversation}/messages",
                    {"client_id": f"c{i}", "text": QUESTIONS[i % len(QUESTIONS)]},
                    {**auth, "Accept": "text/event-stream"},
                )
                assert status == 200 and b"message_end" in body, (status, body[-300:])

            for i in range(args.warmup):
                await turn(i)
            await asyncio.sleep(0.1)
            profiler = cProfile.Profile() if args.profile else None
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            for i in range(args.warmup, args.warmup + args.turns):
                await turn(i)
            await asyncio.sleep(0.05)  # the worker's pass over the last events
            if profiler:
                profiler.disable()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if profiler:
            profiler.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    return {
        "turns": args.turns,
        "cpu_ms_per_turn": round(1000 * cpu / args.turns, 3),
        "wall_ms_per_turn": round(1000 * wall / args.turns, 3),
        "database": "postgresql" if args.database_url else "sqlite",
        "responder": "openai (fake upstream)" if args.upstream else "knowledge (answer cache)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--visitors", type=int, default=30)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--profile", default=None, help="write a cProfile here")
    parser.add_argument(
        "--openai", action="store_true", help="answer through an OpenAI-compatible fake upstream"
    )
    parser.add_argument("--json-out", default="bench/results/turn_cpu.json")
    args = parser.parse_args()
    if args.openai:
        with upstream_fake(0) as base_url:
            args.upstream = f"{base_url}/v1"
            result = asyncio.run(run(args))
    else:
        args.upstream = None
        result = asyncio.run(run(args))
    print(
        f"{result['database']}: {result['turns']} turns, "
        f"CPU {result['cpu_ms_per_turn']} ms/turn, wall {result['wall_ms_per_turn']} ms/turn"
    )
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

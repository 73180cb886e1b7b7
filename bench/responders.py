"""Responder benchmark: what FrontDesk adds to an upstream's first token, and the answer cache.

1. First-token latency added by the server. A faithful OpenAI fake (tests/fakes, a real HTTP
   server on loopback, first token after `--upstream-ms`) is called directly with the `openai`
   SDK at `--rate` new messages per second; then the same load goes through a real
   `frontdesk serve` whose site answers with that upstream (`POST …/messages` with SSE), timing
   request → first `delta` event. Added = through FrontDesk − direct, per percentile.
2. Answer-cache hit rate on a standard mix: `--asks` first questions in new conversations drawn
   (Zipf-like, seeded) from 20 frequently asked questions, against the knowledge responder.
3. `--turn-cpu N`: only the responder path, in this process: N streamed answers through the
   chain `ResponderFactory.build` makes for an `openai` site (as a turn builds it), `--concurrency`
   at a time, against the same fake in its own process. Prints the CPU time this process spent
   per streamed turn (what the server pays for the upstream side of a turn, without storing
   messages or serving the visitor). `--profile FILE` writes a cProfile of that run.

Budgets (issue): added p50 ≤ 5 ms, p99 ≤ 25 ms at 100 messages/s; hit rate ≥ 80 %.
The server runs alone on CPU 0, this load generator and the upstream fake on CPU 1 (`--no-pin`
to disable); the server's CPU per turn is counted over the timed messages only (visitors and
conversations are prepared before the clock starts).
Retrieval p95 at 100k chunks and ingestion speed are measured by bench/retrieval.py.

    .venv/bin/python -m bench.responders --rate 100 --seconds 10
    .venv/bin/python -m bench.responders --turn-cpu 2000 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI

VENV_BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
ORIGIN = "http://bench.local"
# The upstream fake runs in its own process, so that it and the load generator do not share a
# GIL: what is measured is FrontDesk, not the harness.
FAKE_PROCESS = """
import sys, asyncio
from tests.fakes import OpenAIFake, FakeServer
fake = OpenAIFake(api_key="sk-bench", model="bench-model")
fake.first_token_latency = float(sys.argv[2])
fake.answer_tokens = 8
async def main():
    async with FakeServer(fake, port=int(sys.argv[1])):
        await asyncio.Event().wait()
asyncio.run(main())
"""
FAQ = [
    "How do I install FrontDesk?",
    "What is a responder?",
    "How do I verify visitor identity?",
    "How do webhooks retry?",
    "What does make run do?",
    "How do I add documents?",
    "What are allowed origins?",
    "How do rate limits work?",
    "What is the answer cache?",
    "How do I rotate the secret key?",
    "What is the SSE fallback?",
    "How do I create a site?",
    "What does /ready check?",
    "How do I connect Dify?",
    "How do I connect Ollama?",
    "What is an API key scope?",
    "How are operators signed in?",
    "What is a quick action?",
    "How does the widget resume?",
    "Where are the logs?",
]


@contextmanager
def upstream_fake(first_token_s: float) -> Iterator[str]:
    """The OpenAI-compatible fake in its own process, first token after `first_token_s`; yields
    its base URL (without `/v1`) once it answers, and stops it after."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", FAKE_PROCESS, str(port), str(first_token_s)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {k: round(pct(values, float(k[1:])) * 1000, 2) for k in ("p50", "p95", "p99")}


async def open_loop(
    rate: float,
    seconds: float,
    one: Any,
    warmup_s: float = 0.0,
    timed_start: Callable[[], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Start `one(i)` at a fixed rate (not waiting for earlier ones), first for `warmup_s`, then
    for `seconds`; the latencies of the warm-up messages and of the timed ones. `timed_start` is
    called as the first timed message starts."""
    warm = int(rate * warmup_s)
    tasks = []
    start = time.perf_counter()
    for i in range(warm + int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if i == warm and timed_start is not None:
            timed_start()
        tasks.append(asyncio.create_task(one(i)))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [r if isinstance(r, float) else None for r in results]
    return (
        [r for r in latencies[:warm] if r is not None],
        [r for r in latencies[warm:] if r is not None],
    )


async def direct(
    base_url: str, rate: float, seconds: float, warmup_s: float
) -> tuple[list[float], list[float]]:
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="sk-bench", max_retries=0)

    async def one(i: int) -> float:
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model="bench-model",
            messages=[{"role": "user", "content": f"question {i}"}],
            stream=True,
        )
        first = None
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        return float(first if first is not None else "nan")

    try:
        return await open_loop(rate, seconds, one, warmup_s)
    finally:
        await client.close()


async def direct_http(
    base_url: str, rate: float, seconds: float, warmup_s: float
) -> tuple[list[float], list[float]]:
    """The same calls with the HTTP client the FrontDesk run uses (httpx, reading lines): a
    baseline whose client costs what the FrontDesk run's client costs, so that the difference
    is the server's (the SDK's own parsing on this core shows in the tail of `direct`)."""
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=500)
    body = {"model": "bench-model", "stream": True}
    headers = {"Authorization": "Bearer sk-bench"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:

        async def one(i: int) -> float:
            started = time.perf_counter()
            messages = [{"role": "user", "content": f"question {i}"}]
            async with http.stream(
                "POST", "/v1/chat/completions", json={**body, "messages": messages}, headers=headers
            ) as response:
                first = float("nan")
                # Read to the end, as the SDK baseline and a real client do (a stream left
                # early closes its connection, and the next message would open a new one).
                async for line in response.aiter_lines():
                    if first != first and line.startswith("data: {"):
                        choices = json.loads(line[6:]).get("choices") or [{}]
                        if (choices[0].get("delta") or {}).get("content"):
                            first = time.perf_counter() - started
            return first

        return await open_loop(rate, seconds, one, warmup_s)


async def turn_cpu(
    upstream: str, turns: int, concurrency: int, history_turns: int, profile: Path | None
) -> dict[str, Any]:
    """CPU of this process per streamed answer through the responder chain, as a turn runs it:
    the chain built from the site's stored (sealed) responder JSON, a short history, the answer
    streamed to its end."""
    from frontdesk.config import Settings
    from frontdesk.responders.base import AnswerRequest, FinalAnswer, HistoryItem
    from frontdesk.responders.breaker import MemoryBreakerStore
    from frontdesk.responders.config import seal_responder
    from frontdesk.responders.registry import ResponderFactory
    from frontdesk.security.keys import SecretBox

    settings = Settings()
    box = SecretBox(settings.server_key)

    def no_reads() -> Any:
        raise AssertionError("an openai link reads nothing")

    factory = ResponderFactory(
        settings=settings, box=box, read_scope=no_reads, breaker_store=MemoryBreakerStore()
    )
    stored = seal_responder(
        {
            "kind": "openai",
            "base_url": f"{upstream}/v1",
            "api_key": "sk-bench",
            "model": "bench-model",
        },
        box,
    )
    # Earlier turns of the conversation (a question and its answer each), sent as history.
    history = [
        HistoryItem(role, text)
        for i in range(history_turns)
        for role, text in (
            ("visitor", f"Hello, do you ship order {i} to Norway?"),
            ("assistant", "Yes, we ship to Norway within five working days."),
        )
    ]
    gate = asyncio.Semaphore(concurrency)
    usage_seen = 0

    async def one(i: int) -> None:
        nonlocal usage_seen
        request = AnswerRequest(
            "site_bench", f"conv_{i}", f"vis_{i}", f"question {i}", history, "en", "Bench"
        )
        async with gate:
            chain = factory.build(stored)
            async for item in chain.answer(request):
                if isinstance(item, FinalAnswer):
                    if item.meta.get("responder") != "openai":
                        raise RuntimeError(f"the upstream did not answer: {item.meta}")
                    usage_seen += bool(item.usage)

    await asyncio.gather(*(one(i) for i in range(min(turns, 50))))  # warm: pool, imports
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(turns)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    await factory.close()
    return {
        "turns": turns,
        "concurrency": concurrency,
        "history_turns": history_turns,
        "cpu_per_turn_ms": round(cpu / turns * 1000, 3),
        "turns_per_cpu_second": round(turns / cpu),
        "wall_s": round(wall, 2),
        "answers_with_usage": usage_seen,
    }


def xff(i: int) -> str:
    return f"198.18.{(i // 250) % 250}.{i % 250 + 1}"


async def through_frontdesk(
    base: str,
    site_id: str,
    rate: float,
    seconds: float,
    warmup_s: float,
    clock_starts: Callable[[], None],
) -> tuple[list[float], list[float]]:
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=500)
    count = int(rate * warmup_s) + int(rate * seconds)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def prepare(i: int) -> tuple[dict[str, str], str]:
            headers = {"Origin": ORIGIN, "X-Forwarded-For": xff(i)}
            body = {"site_id": site_id}
            session = (
                await http.post("/api/widget/v1/sessions", json=body, headers=headers)
            ).json()
            auth = {**headers, "Authorization": f"Bearer {session['access_token']}"}
            conversation = (await http.post("/api/widget/v1/conversations", headers=auth)).json()
            return auth, conversation["id"]

        # Visitors and conversations exist before the clock starts: only messages are timed.
        prepared = [await prepare(i) for i in range(count)]

        async def one(i: int) -> float:
            auth, conversation = prepared[i]
            started = time.perf_counter()
            async with http.stream(
                "POST",
                f"/api/widget/v1/conversations/{conversation}/messages",
                headers={**auth, "Accept": "text/event-stream"},
                json={"client_id": str(uuid.uuid4()), "text": f"question {i}"},
            ) as response:
                first = float("nan")
                # Read to the end (`message_end`), as the widget does.
                async for line in response.aiter_lines():
                    if first != first and line == "event: delta":
                        first = time.perf_counter() - started
            return first

        # The server's CPU is counted from the first timed message on.
        return await open_loop(rate, seconds, one, warmup_s, clock_starts)


async def cache_mix(base: str, site_id: str, asks: int) -> dict[str, Any]:
    rng = random.Random(11)
    weights = [1 / (rank + 1) for rank in range(len(FAQ))]
    hits = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for i in range(asks):
            question = rng.choices(FAQ, weights)[0]
            headers = {"Origin": ORIGIN, "X-Forwarded-For": xff(10_000 + i)}
            session = (
                await http.post(
                    "/api/widget/v1/sessions", json={"site_id": site_id}, headers=headers
                )
            ).json()
            auth = {**headers, "Authorization": f"Bearer {session['access_token']}"}
            conversation = (await http.post("/api/widget/v1/conversations", headers=auth)).json()[
                "id"
            ]
            response = await http.post(
                f"/api/widget/v1/conversations/{conversation}/messages",
                headers={**auth, "Accept": "text/event-stream"},
                json={"client_id": "q", "text": question},
            )
            frames = [
                json.loads(line[6:])
                for line in response.text.splitlines()
                if line.startswith("data: ")
            ]
            answer = [f for f in frames if f["type"] == "message"][-1]["message"]
            hits += bool((answer.get("meta") or {}).get("cached"))
    return {
        "asks": asks,
        "distinct_questions": len(FAQ),
        "hits": hits,
        "hit_rate": round(hits / asks, 3),
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [str(VENV_BIN / "frontdesk"), "serve", "--demo"], env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--upstream-ms", type=float, default=50)
    parser.add_argument(
        "--warmup", type=float, default=1.0, metavar="S", help="seconds sent before the timed ones"
    )
    parser.add_argument("--asks", type=int, default=300)
    parser.add_argument("--turn-cpu", type=int, default=0, metavar="N")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--history", type=int, default=1, metavar="TURNS")
    parser.add_argument("--profile", type=Path, default=None, metavar="FILE")
    parser.add_argument("--no-pin", action="store_true", help="no CPU pinning")
    args = parser.parse_args()
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    if pin:  # the load generator and the upstream fake on CPU 1, the server alone on CPU 0
        os.sched_setaffinity(0, {1})
    with upstream_fake(args.upstream_ms / 1000) as upstream:
        if args.turn_cpu:
            measured = asyncio.run(
                turn_cpu(upstream, args.turn_cpu, args.concurrency, args.history, args.profile)
            )
            print(json.dumps(measured, indent=2))
            return
        warm = args.warmup
        direct_warm, direct_latencies = asyncio.run(direct(upstream, args.rate, args.seconds, warm))
        same_warm, same_client = asyncio.run(direct_http(upstream, args.rate, args.seconds, warm))
        data = Path(tempfile.mkdtemp(prefix="fd-bench-responders-"))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
        env.update(
            FRONTDESK_DATA_DIR=str(data),
            FRONTDESK_PUBLIC_URL=f"http://127.0.0.1:{port}",
            FRONTDESK_PORT=str(port),
            FRONTDESK_LOG_LEVEL="warning",
            FRONTDESK_TRUSTED_PROXIES="127.0.0.1",
        )
        bin_ = str(VENV_BIN / "frontdesk")
        responder = json.dumps(
            {
                "kind": "openai",
                "base_url": f"{upstream}/v1",
                "api_key": "sk-bench",
                "model": "bench-model",
            }
        )
        created = subprocess.run(
            [
                bin_,
                "site",
                "create",
                "--name",
                "Up",
                "--origin",
                ORIGIN,
                "--responder",
                responder,
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        upstream_site = json.loads(created.stdout)["site_id"]
        knowledge_site = "site_demo"
        server = start_server({**env}, port)
        if pin:
            os.sched_setaffinity(server.pid, {0})
        try:
            # The demo site allows FrontDesk's own origins; give it the bench origin too.
            key = json.loads(
                subprocess.run(
                    [bin_, "apikey", "create", "--scopes", "admin", "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )["key"]
            admin = {"Authorization": f"Bearer {key}"}
            base = f"http://127.0.0.1:{port}"
            high = {
                "visitor_messages": "100000/minute",
                "visitor_burst": 10000,
                "site_messages": "100000/minute",
                "site_burst": 10000,
                "ip_messages": "100000/minute",
                "ip_burst": 10000,
            }
            httpx.patch(
                f"{base}/api/v1/sites/{upstream_site}",
                headers=admin,
                json={"limits": high, "options": {"answer_cache": False}},
            ).raise_for_status()
            demo = httpx.get(f"{base}/api/v1/sites/{knowledge_site}", headers=admin).json()
            httpx.patch(
                f"{base}/api/v1/sites/{knowledge_site}",
                headers=admin,
                json={"allowed_origins": [*demo["allowed_origins"], ORIGIN], "limits": high},
            ).raise_for_status()
            marks: dict[str, float] = {}

            def clock_starts() -> None:
                marks["cpu"] = process_cpu_s(server.pid)
                marks["load"] = os.getloadavg()[0]
                print("timed messages start", file=sys.stderr, flush=True)

            served_warm, served = asyncio.run(
                through_frontdesk(base, upstream_site, args.rate, args.seconds, warm, clock_starts)
            )
            cpu_before, load_before = marks["cpu"], marks["load"]
            server_cpu = process_cpu_s(server.pid) - cpu_before
            load_after = os.getloadavg()[0]
            cache = asyncio.run(cache_mix(base, knowledge_site, args.asks))
        finally:
            server.terminate()
            server.wait(timeout=15)
    direct_s, served_s = summary(direct_latencies), summary(served)
    same_s = summary(same_client)
    added = {k: round(served_s[k] - direct_s[k], 2) for k in direct_s}
    added_same = {k: round(served_s[k] - same_s[k], 2) for k in same_s}
    result = {
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        # Messages sent at the same rate before the timed ones (each run's first connections,
        # first requests through each code path), reported apart from the steady state.
        "warmup_s": warm,
        "warmup_first_token_ms": {
            "direct": summary(direct_warm),
            "direct_same_client": summary(same_warm),
            "through_frontdesk": summary(served_warm),
        },
        "upstream_first_token_ms": args.upstream_ms,
        "direct_first_token_ms": direct_s,
        "through_frontdesk_first_token_ms": served_s,
        "added_ms": added,
        "direct_same_client_first_token_ms": same_s,
        "added_vs_same_client_ms": added_same,
        "samples": {
            "direct": len(direct_latencies),
            "direct_same_client": len(same_client),
            "served": len(served),
        },
        # CPU of the server process while the served phase ran (sessions and conversations were
        # made before it), per message sent: storing both messages, the turn and the upstream.
        "server_cpu_per_turn_ms": round(server_cpu / max(1, len(served)) * 1000, 2),
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "answer_cache": cache,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "responders.json").write_text(json.dumps(result, indent=2))
    print(f"{'first token (ms)':<22}{'p50':>9}{'p95':>9}{'p99':>9}")
    for name, row in (
        ("direct (openai SDK)", direct_s),
        ("direct (httpx)", same_s),
        ("through FrontDesk", served_s),
        ("added vs SDK", added),
        ("added vs httpx", added_same),
    ):
        print(f"{name:<22}{row['p50']:>9}{row['p95']:>9}{row['p99']:>9}")
    cold = result["warmup_first_token_ms"]["through_frontdesk"]
    if cold:
        print(f"{'warm-up, FrontDesk':<22}{cold['p50']:>9}{cold['p95']:>9}{cold['p99']:>9}")
    print(
        f"server CPU per turn: {result['server_cpu_per_turn_ms']} ms; "
        f"load average {result['load_average'][0]} -> {result['load_average'][1]}"
    )
    print(f"answer cache: {cache['hits']}/{cache['asks']} hits ({cache['hit_rate']:.1%})")
    print(f"written {RESULTS / 'responders.json'}")


if __name__ == "__main__":
    main()

"""Dashboard benchmark: how long an event takes from the widget API call that causes it to the
operator's screen.

A real `frontdesk serve` on loopback, an operator signed in to the dashboard in headless Chromium
with two pages open (the overview and the inbox), and a visitor driving the widget HTTP API with
httpx. For each of `--events` rounds (spaced `--interval-ms` apart): create a conversation
(`conversation.started`), then post a message in it (`message.created`). For each event and page,
the time from just before the HTTP call to the moment the element showing it is inserted into the
page (a MutationObserver in the page records `Date.now()`; Python and Chromium share the clock):

* overview — the event's line in "Latest activity";
* inbox — the conversation's row (new conversation), the row's message count reaching 1 (message).

The path measured is: HTTP handler → commit → broker → `/ws/events` → the dashboard's handler →
Svelte render. Prints p50/p95/max per event and page and writes
bench/results/dashboard_latency.json. Bounded: at most 500 rounds, and `--timeout-s` for the whole
measurement.

    .venv/bin/python -m bench.dashboard_latency [--events 50] [--interval-ms 200]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "frontdesk" / "web" / "static"
RESULTS = ROOT / "bench" / "results" / "dashboard_latency.json"
FRONTDESK = str(Path(sys.executable).parent / "frontdesk")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
PASSWORD = "bench operator password"
MAX_EVENTS = 500
# What the dashboard pages render for each event; keys as the observer below records them.
PROBES = {
    ("conversation.started", "overview"): "event:conversation.started:{id}",
    ("conversation.started", "inbox"): "row:{id}",
    ("message.created", "overview"): "event:message.created:{id}",
    ("message.created", "inbox"): "seq:{id}:1",
}
WATCH = """
window.__seen = {};
const mark = (key) => { if (!(key in window.__seen)) window.__seen[key] = Date.now(); };
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[data-testid=conversation-row]')) {
    mark('row:' + el.dataset.id);
    if (Number(el.dataset.lastSeq || 0) >= 1) mark('seq:' + el.dataset.id + ':1');
  }
  for (const el of document.querySelectorAll('[data-testid=recent-event]'))
    mark('event:' + el.dataset.type + ':' + el.dataset.conversationId);
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [FRONTDESK, *args], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, str, str]:
    """The server, a site with its visitor limits raised (one visitor sends every message), and
    an operator account; returns (process, url, site id, operator email)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATA_DIR=str(data_dir),
        FRONTDESK_PUBLIC_URL=url,
        FRONTDESK_PORT=str(port),
        FRONTDESK_LOG_LEVEL="warning",
    )
    site_id = json.loads(run(env, "site", "create", "--name", "Bench", "--origin", url, "--json"))[
        "site_id"
    ]
    key = json.loads(run(env, "apikey", "create", "--scopes", "admin", "--json"))["key"]
    email = "bench@desk.example"
    run(env, "admin", "create", "--email", email, "--password", PASSWORD)
    process = subprocess.Popen(
        [FRONTDESK, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.terminate()
        raise SystemExit("frontdesk serve did not start")
    limits = {
        "visitor_messages": "6000/minute",
        "visitor_burst": 1000,
        "ip_messages": "6000/minute",
        "ip_burst": 1000,
    }
    changed = httpx.patch(
        f"{url}/api/v1/sites/{site_id}",
        json={"limits": limits},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    changed.raise_for_status()
    return process, url, site_id, email


def measure(
    url: str, site_id: str, email: str, events: int, interval_s: float, timeout_s: float
) -> tuple[dict[str, list[float]], dict[str, int], int]:
    from playwright.sync_api import sync_playwright

    samples: dict[str, list[float]] = {f"{e}|{p}": [] for e, p in PROBES}
    missed: dict[str, int] = {key: 0 for key in samples}
    deadline = time.monotonic() + timeout_s
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(WATCH)
            overview = context.new_page()
            overview.goto(f"{url}/dashboard/")
            overview.get_by_test_id("login-email").fill(email)
            overview.get_by_test_id("login-password").fill(PASSWORD)
            overview.get_by_test_id("login-submit").click()
            overview.get_by_test_id("tiles").wait_for()
            inbox = context.new_page()
            inbox.goto(f"{url}/dashboard/inbox")
            inbox.locator("[data-testid=inbox-list], [data-testid=inbox-empty]").wait_for()
            for page in (overview, inbox):
                page.wait_for_selector("[data-testid=live-status][data-status=live]")
            pages = {"overview": overview, "inbox": inbox}
            with httpx.Client(base_url=f"{url}/api/widget/v1", headers={"Origin": url}) as http:
                session = http.post("/sessions", json={"site_id": site_id}).json()
                http.headers["Authorization"] = f"Bearer {session['access_token']}"
                done = 0
                for _ in range(events):
                    if time.monotonic() > deadline:
                        break
                    started = time.time() * 1000
                    conversation = http.post("/conversations").json()["id"]
                    sent = time.time() * 1000
                    posted = http.post(
                        f"/conversations/{conversation}/messages",
                        json={"client_id": secrets.token_hex(8), "text": "Are you open today?"},
                    )
                    posted.raise_for_status()
                    origins = {"conversation.started": started, "message.created": sent}
                    for (event, page_name), probe in PROBES.items():
                        key = probe.format(id=conversation)
                        page = pages[page_name]
                        try:
                            page.wait_for_function(
                                "(key) => key in window.__seen", arg=key, timeout=5000
                            )
                        except Exception:
                            missed[f"{event}|{page_name}"] += 1
                            continue
                        at = float(page.evaluate("(key) => window.__seen[key]", key))
                        samples[f"{event}|{page_name}"].append(at - origins[event])
                    done += 1
                    time.sleep(interval_s)
        finally:
            browser.close()
    return samples, missed, done


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50, help=f"rounds (at most {MAX_EVENTS})")
    parser.add_argument("--interval-ms", type=int, default=200, help="pause between rounds")
    parser.add_argument("--timeout-s", type=float, default=300, help="bound on the measurement")
    args = parser.parse_args()
    events = max(1, min(args.events, MAX_EVENTS))
    if not (STATIC / "dashboard" / "index.html").exists():
        raise SystemExit("the dashboard is not built: run `make build`")
    with tempfile.TemporaryDirectory(prefix="fd-bench-dashboard-") as tmp:
        process, url, site_id, email = start_server(Path(tmp))
        try:
            samples, missed, done = measure(
                url, site_id, email, events, args.interval_ms / 1000, args.timeout_s
            )
        finally:
            process.terminate()
            process.wait(timeout=20)
    rows = {
        key: {
            "n": len(values),
            "missed": missed[key],
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "max_ms": round(max(values), 1) if values else None,
        }
        for key, values in samples.items()
    }
    result: dict[str, Any] = {
        "rounds": done,
        "interval_ms": args.interval_ms,
        "budget_ms": 500,
        "latency": rows,
        "raw_ms": {k: [round(v, 1) for v in vs] for k, vs in samples.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "chromium": CHROMIUM,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    header = ("event", "page", "n", "p50 ms", "p95 ms", "max ms", "missed")
    print("{:<22} {:<9} {:>4} {:>8} {:>8} {:>8} {:>7}".format(*header))
    for key, row in rows.items():
        event, page = key.split("|")
        print(
            f"{event:<22} {page:<9} {row['n']:>4} {row['p50_ms']!s:>8} {row['p95_ms']!s:>8} "
            f"{row['max_ms']!s:>8} {row['missed']:>7}"
        )
    print(f"\n{done} rounds, {args.interval_ms} ms apart; results in {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

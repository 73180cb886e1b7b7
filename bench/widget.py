"""Widget benchmark: bundle sizes and, in Chromium, how fast the widget appears and opens.

* **sizes** — raw and gzipped (level 9) bytes of the loader (`widget.js`) and of the chat frame
  (its JS + CSS), from the build output `frontdesk/web/static` (run `make build` first), checked
  against the budgets: loader ≤ 3 KB gzipped, frame ≤ 30 KB gzipped.
* **timings** — a real `frontdesk serve` on loopback and a host page on another origin; for each
  of `--runs` runs, a fresh browser context (cold cache) loads the page:
  - *launcher*: from the end of `widget.js`'s download (its Resource Timing `responseEnd`) to the
    loader's `frontdesk:launcher-visible` mark (includes fetching the site config);
  - *open*: from the click on the launcher to the loader's `frontdesk:frame-ready` mark, posted
    by the frame when the chat is usable (iframe loaded, session started, socket joined).
  The median and the range are reported.

Prints a table and writes bench/results/widget.json.

    .venv/bin/python -m bench.widget [--runs 10]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "frontdesk" / "web" / "static"
RESULTS = ROOT / "bench" / "results" / "widget.json"
FRONTDESK = str(Path(sys.executable).parent / "frontdesk")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BUDGETS = {"loader": 3 * 1024, "frame": 30 * 1024}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sizes() -> dict[str, dict[str, int]]:
    manifest = json.loads((STATIC / "manifest.json").read_text())
    groups = {
        "loader": [STATIC / "widget.js"],
        "frame": [STATIC / "w" / manifest["frame_js"], STATIC / "w" / manifest["frame_css"]],
    }
    out: dict[str, dict[str, int]] = {}
    for name, files in groups.items():
        raw = sum(len(f.read_bytes()) for f in files)
        gz = sum(len(gzip.compress(f.read_bytes(), 9)) for f in files)
        out[name] = {"raw_bytes": raw, "gzip_bytes": gz, "budget_gzip_bytes": BUDGETS[name]}
    return out


def start_host(port: int, server_url: str, site_id: str) -> ThreadingHTTPServer:
    """The host page, on the origin the site allows (another origin than the server's)."""
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Host</title>'
        f'<script src="{server_url}/widget.js" data-site-id="{site_id}" async></script>'
        "</head><body><h1>Host page</h1></body></html>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def start_server(data_dir: Path, host_origin: str) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATA_DIR=str(data_dir),
        FRONTDESK_PUBLIC_URL=url,
        FRONTDESK_PORT=str(port),
        FRONTDESK_LOG_LEVEL="warning",
    )
    created = subprocess.run(
        [FRONTDESK, "site", "create", "--name", "Bench", "--origin", host_origin, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    site_id = json.loads(created.stdout)["site_id"]
    process = subprocess.Popen(
        [FRONTDESK, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url, site_id
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("frontdesk serve did not start")


MEASURE_LAUNCHER = """() => {
  const mark = performance.getEntriesByName('frontdesk:launcher-visible')[0];
  const script = performance.getEntriesByType('resource').find(e => e.name.endsWith('/widget.js'));
  return mark.startTime - script.responseEnd;
}"""
CLICK = """() => {
  window.__clickAt = performance.now();
  document.querySelector('[data-frontdesk]').shadowRoot.querySelector('button').click();
}"""
MEASURE_OPEN = """() =>
  performance.getEntriesByName('frontdesk:frame-ready')[0].startTime - window.__clickAt"""


def timings(host_url: str, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {"launcher_ms": [], "open_ms": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1024, "height": 768})
                page = context.new_page()
                page.goto(host_url)
                page.wait_for_function(
                    "performance.getEntriesByName('frontdesk:launcher-visible').length > 0"
                )
                out["launcher_ms"].append(float(page.evaluate(MEASURE_LAUNCHER)))
                page.evaluate(CLICK)
                page.wait_for_function(
                    "performance.getEntriesByName('frontdesk:frame-ready').length > 0",
                    timeout=30000,
                )
                out["open_ms"].append(float(page.evaluate(MEASURE_OPEN)))
                context.close()
        finally:
            browser.close()
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if not (STATIC / "widget.js").exists():
        raise SystemExit("the widget is not built: run `make build`")
    measured_sizes = sizes()
    with tempfile.TemporaryDirectory(prefix="fd-bench-widget-") as tmp:
        host_port = free_port()
        host_origin = f"http://127.0.0.1:{host_port}"
        process, url, site_id = start_server(Path(tmp), host_origin)
        try:
            host = start_host(host_port, url, site_id)
            try:
                measured = timings(f"{host_origin}/", args.runs)
            finally:
                host.shutdown()
                host.server_close()
        finally:
            process.terminate()
            process.wait(timeout=20)
    result: dict[str, Any] = {
        "sizes": measured_sizes,
        "timings": {name: summary(values) for name, values in measured.items()},
        "runs": args.runs,
        "raw_timings_ms": measured,
        "chromium": CHROMIUM,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'bundle':<8} {'raw B':>8} {'gzip B':>8} {'budget':>8}  ok")
    for name, row in measured_sizes.items():
        ok = "yes" if row["gzip_bytes"] <= row["budget_gzip_bytes"] else "NO"
        print(
            f"{name:<8} {row['raw_bytes']:>8} {row['gzip_bytes']:>8} "
            f"{row['budget_gzip_bytes']:>8}  {ok}"
        )
    print()
    print(f"{'timing (ms)':<34} {'median':>8} {'min':>8} {'max':>8}")
    labels = {
        "launcher_ms": "script loaded -> launcher visible",
        "open_ms": "click -> chat frame ready",
    }
    for name, row in result["timings"].items():
        print(f"{labels[name]:<34} {row['median']:>8} {row['min']:>8} {row['max']:>8}")
    print(f"\n{args.runs} runs, fresh context each; results in {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

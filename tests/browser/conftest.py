"""Fixtures for the browser suite: a real `frontdesk serve`, host pages on other origins, Chromium.

One FrontDesk server runs for the whole suite (FRONTDESK_ACCESS_TOKEN_TTL_S=60, the minimum, so
token rotation happens while chats are open), with its sites created by the CLI before it starts
and configured through the REST API with an admin key. Host pages are served from two other
origins by tiny `http.server`s in threads: one every site allows, one none does. Chromium is
Debian's `/usr/bin/chromium`, driven by Playwright's sync API; each test gets a fresh context.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.processes import FRONTDESK, base_env, cli, free_port

CHROMIUM = Path("/usr/bin/chromium")
STATIC = Path(__file__).resolve().parents[2] / "frontdesk" / "web" / "static"
REQUIRE = os.environ.get("FRONTDESK_TEST_REQUIRE_SERVICES") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KB_DOC = """# Zebra safety handbook

The zebra protocol keeps every payload inert: <script>window.__xss=1;alert('kb')</script> is
text. Zebra payloads include <img src=x onerror="window.__xss=1;alert(2)"> and
<svg onload="window.__xss=1"></svg> tags. Zebra links such as
<a href="javascript:alert(3)">zebra</a> are shown as plain text.

# Opening hours

Our office opens at nine in the morning and closes at six in the evening on weekdays.
The support desk answers questions about opening hours, delivery and refunds.
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real Chromium against frontdesk serve")


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return "Chromium is missing (make browser)"
    if not (STATIC / "widget.js").exists() or not (STATIC / "manifest.json").exists():
        return "the widget is not built (make build)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


@pytest.fixture(scope="session")
def requirements() -> None:
    reason = _missing()
    if reason:
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)


# Host pages ---------------------------------------------------------------------------------


def host_page(server: str, site_id: str, query: dict[str, str]) -> str:
    """A customer's page: some content, the page-API snippet, the widget's script tag."""
    calls = json.loads(query.get("calls", "[]"))
    locale = query.get("locale")
    attrs = f' data-locale="{html.escape(locale)}"' if locale else ""
    queued = "".join(f"FrontDesk(...{json.dumps(c)});" for c in calls)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Shop</title>
<style>body{{font:16px/1.5 sans-serif;margin:0;padding:24px;background:#fafafa;color:#222}}
.hero{{height:160px;background:#dde3ea;border-radius:8px;margin-bottom:16px}}</style>
<script>
window.__events = [];
window.FrontDesk = window.FrontDesk || function () {{
  (window.FrontDesk.q = window.FrontDesk.q || []).push(arguments);
}};
FrontDesk("on", "open", function () {{ window.__events.push("open"); }});
FrontDesk("on", "close", function () {{ window.__events.push("close"); }});
FrontDesk("on", "message", function (m) {{ window.__events.push("message:" + m.role); }});
{queued}
</script>
<script src="{server}/widget.js" data-site-id="{html.escape(site_id)}"{attrs} async></script>
</head><body><div class="hero"></div><h1>Welcome to the shop</h1>
<p>Everything you need, delivered.</p></body></html>"""


def frame_only_page(server: str, site_id: str) -> str:
    """A page that frames the chat directly (the frame's CSP decides whether that works)."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Framer</title></head>
<body><iframe id="direct" src="{server}/w/{html.escape(site_id)}" width="400" height="500">
</iframe></body></html>"""


class HostServer:
    """Serves host pages on its own origin: `/?site=…&locale=…&calls=[…]` and `/frame?site=…`."""

    def __init__(self, server_url: str) -> None:
        server = server_url

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                site = query.get("site", "")
                if parts.path == "/frame":
                    body = frame_only_page(server, site)
                elif parts.path == "/":
                    body = host_page(server, site, query)
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, site_id: str, **query: str) -> str:
        from urllib.parse import urlencode

        return f"{self.origin}/?{urlencode({'site': site_id, **query})}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# The FrontDesk server -----------------------------------------------------------------------


@dataclass
class Sites:
    main: str = ""
    main_secret: str = ""
    limited: str = ""
    russian: str = ""
    failing: str = ""


@dataclass
class Desk:
    """The running server, its data, sites and an admin key; restartable on the same port."""

    env: dict[str, str]
    port: int
    data_dir: Path
    admin_key: str = ""
    sites: Sites = field(default_factory=Sites)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> None:
        import time

        self.process = subprocess.Popen(
            [FRONTDESK, "serve"],
            env={**self.env, "FRONTDESK_PORT": str(self.port)},
            stdout=subprocess.DEVNULL,
            stderr=(self.data_dir / "server.log").open("ab"),
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("frontdesk serve exited during start-up")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("frontdesk serve did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.request(
            method, f"{self.url}/api/v1{path}", headers=headers, timeout=10, **kwargs
        )

    def widget_messages(self, access_token: str, conversation_id: str) -> list[dict[str, Any]]:
        """A conversation's stored messages, read as the visitor through the widget API."""
        response = httpx.get(
            f"{self.url}/api/widget/v1/conversations/{conversation_id}/messages",
            params={"after_seq": 0, "limit": 200},
            headers={"Authorization": f"Bearer {access_token}", "Origin": self.url},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return list(response.json()["messages"])

    def add_operator_message(self, conversation_id: str, text: str) -> None:
        """Store an operator reply straight into the server's database (as the inbox would)."""
        from frontdesk.actions.messages import do_create_message
        from frontdesk.config import load_settings
        from frontdesk.db import Database

        async def work() -> None:
            db = Database(load_settings(data_dir=self.data_dir))
            try:
                async with db.session_scope() as session:
                    await do_create_message(
                        session, conversation_id=conversation_id, role="operator", text=text
                    )
            finally:
                await db.dispose()

        # Playwright's sync API runs an event loop in this thread: use another one.
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _run_catching(work, errors))
        thread.start()
        thread.join()
        if errors:
            raise errors[0]


def _run_catching(work: Any, errors: list[BaseException]) -> None:
    try:
        asyncio.run(work())
    except BaseException as exc:
        errors.append(exc)


def _create_site(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = cli(env, "site", "create", "--json", *args)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="session")
def desk(
    requirements: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Desk, HostServer, HostServer]]:
    data_dir = tmp_path_factory.mktemp("browser-desk")
    port = free_port()
    env = base_env(data_dir, None, FRONTDESK_ACCESS_TOKEN_TTL_S="60")
    env["FRONTDESK_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    desk = Desk(env=env, port=port, data_dir=data_dir)
    allowed, refused = HostServer(desk.url), HostServer(desk.url)
    origin = allowed.origin
    main = _create_site(
        env, "--name", "Acme Shop", "--origin", origin, "--greeting", "Hi! How can I help?"
    )
    desk.sites.main, desk.sites.main_secret = main["site_id"], main["secret"]
    desk.sites.limited = _create_site(env, "--name", "Limited", "--origin", origin)["site_id"]
    desk.sites.russian = _create_site(
        env,
        "--name",
        "Магазин",
        "--origin",
        origin,
        "--locale",
        "ru",
        "--greeting",
        "Здравствуйте!",
    )["site_id"]
    failing = json.dumps(
        {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x", "model": "m"}
    )
    desk.sites.failing = _create_site(
        env, "--name", "Failing", "--origin", origin, "--responder", failing
    )["site_id"]
    doc = data_dir / "handbook.md"
    doc.write_text(KB_DOC, encoding="utf-8")
    added = cli(env, "kb", "add", "--site", desk.sites.main, str(doc))
    assert added.returncode == 0, added.stderr
    key = cli(env, "apikey", "create", "--scopes", "admin", "--json")
    assert key.returncode == 0, key.stderr
    desk.admin_key = json.loads(key.stdout)["key"]
    desk.start()
    configure_sites(desk)
    allowed.start()
    refused.start()
    try:
        yield desk, allowed, refused
    finally:
        allowed.stop()
        refused.stop()
        desk.stop()


def configure_sites(desk: Desk) -> None:
    main = {
        "quick_actions": [
            {
                "id": "hours",
                "label": "Opening hours",
                "kind": "message",
                "value": "When do you open?",
            },
            {"id": "docs", "label": "Docs", "kind": "url", "value": "https://docs.example/guide"},
        ],
        "offers": [
            {
                "id": "guide",
                "title": "Free sizing guide",
                "teaser": "Leave your email to unlock it.",
                "fields": ["email"],
                "content": "**Measure twice.** Full guide: [read it](https://docs.example/size)",
            }
        ],
    }
    for site_id, changes in (
        (desk.sites.main, main),
        (desk.sites.limited, {"limits": {"visitor_messages": "1/hour", "visitor_burst": 1}}),
    ):
        response = desk.admin("PATCH", f"/sites/{site_id}", json=changes)
        assert response.status_code == 200, response.text


# Chromium -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser(requirements: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1024, "height": 768}, locale="en-US")
    ctx.set_default_timeout(15000)
    yield ctx
    ctx.close()

"""The operator dashboard in Chromium against a real `frontdesk serve`: sign-in and CSRF, events on
screen within 500 ms of the widget API call that caused them, the takeover round trip with a
visitor chatting in the real widget, an admin change reaching the widget without a restart, and
every page rendered (each test saves screenshots to tests/browser/artifacts/, gitignored).

Every dashboard page is watched for Content-Security-Policy violations: the dashboard runs under
its strict policy (no inline scripts or styles), and any violation fails the test.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Desk, HostServer
from tests.browser.helpers import NOTICE, answers, open_chat, send, visitor_state, wait_answers
from tests.processes import cli

pytestmark = pytest.mark.browser
Env = tuple[Desk, HostServer, HostServer]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "correct horse battery staple"
LATENCY_BUDGET_MS = 500

# Installed before any page script: CSP violations, and the wall-clock time (ms) at which
# elements the tests wait for first appear in the DOM (a MutationObserver, so the time is taken
# when the element is inserted, not when a test happens to poll).
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
if (location.pathname.startsWith('/dashboard')) {
  window.__seen = {};
  const mark = (key) => { if (!(key in window.__seen)) window.__seen[key] = Date.now(); };
  const scan = () => {
    for (const el of document.querySelectorAll('[data-testid=conversation-row]')) {
      mark('row:' + el.dataset.id);
      const last = Number(el.dataset.lastSeq || 0);
      for (let n = 1; n <= last; n++) mark('seq:' + el.dataset.id + ':' + n);
    }
    for (const el of document.querySelectorAll('[data-testid=recent-event]'))
      mark('event:' + el.dataset.type + ':' + el.dataset.conversationId);
    for (const el of document.querySelectorAll('[data-testid=message]')) {
      const view = el.closest('[data-testid=conversation-view]');
      mark('message:' + (view ? view.dataset.id : '') + ':' + el.dataset.seq);
    }
  };
  new MutationObserver(scan).observe(document, {subtree: true, childList: true, attributes: true});
}
"""


@pytest.fixture(scope="module")
def operator(desk: Env) -> Iterator[str]:
    """An owner account, created with the CLI while the server runs."""
    server, _, _ = desk
    email = f"owner-{secrets.token_hex(4)}@desk.example"
    made = cli(server.env, "admin", "create", "--email", email, "--password", PASSWORD)
    assert made.returncode == 0, made.stderr
    yield email


@pytest.fixture
def dashboard(context: Any) -> Any:
    context.add_init_script(WATCH)
    return context


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def no_csp_violations(page: Page) -> None:
    assert page.evaluate("window.__csp") == [], "the dashboard broke its CSP"


def sign_in(page: Page, server: Desk, email: str, path: str = "/") -> None:
    page.goto(f"{server.url}/dashboard{path}")
    page.get_by_test_id("login-email").fill(email)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-status", "live")


def widget_post(server: Desk, path: str, token: str | None = None, **body: Any) -> dict[str, Any]:
    """A widget API call as a visitor on FrontDesk's own origin (always allowed)."""
    headers = {"Origin": server.url}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.post(
        f"{server.url}/api/widget/v1{path}", json=body, headers=headers, timeout=10
    )
    assert response.status_code in (201, 202), response.text
    return dict(response.json())


def seen_at(page: Page, key: str, timeout_ms: float = 5000) -> float:
    """When the element called `key` (see WATCH) first appeared, in epoch milliseconds."""
    page.wait_for_function("(key) => key in window.__seen", arg=key, timeout=timeout_ms)
    return float(page.evaluate("(key) => window.__seen[key]", key))


def test_sign_in_and_csrf(desk: Env, operator: str, dashboard: Any) -> None:
    server, _, _ = desk
    page: Page = dashboard.new_page()
    page.goto(f"{server.url}/dashboard/")
    expect(page.get_by_test_id("login-form")).to_be_visible()
    page.get_by_test_id("login-email").fill(operator)
    page.get_by_test_id("login-password").fill("not the password at all")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_have_text("The email or password is wrong.")
    shot(page, "login-error")

    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-status", "live")
    expect(page.get_by_test_id("tiles")).to_be_visible()
    cookies = {c["name"]: c for c in dashboard.cookies()}
    assert cookies["__Host-fd_session"]["httpOnly"] is True
    assert page.evaluate("document.cookie").find("__Host-fd_session") == -1

    # An unsafe call riding on the session cookie without the CSRF header is refused...
    create_key = """async (headers) => {
      const r = await fetch('/api/v1/api-keys', {method: 'POST',
        headers: {'Content-Type': 'application/json', ...headers},
        body: JSON.stringify({scopes: ['read'], name: 'forged'})});
      return [r.status, await r.json()];
    }"""
    status, body = page.evaluate(create_key, {})
    assert status == 403 and body["error"]["code"] == "forbidden", body
    status, body = page.evaluate(create_key, {"X-CSRF-Token": "0" * 64})
    assert status == 403, body
    keys = server.admin("GET", "/api-keys").json()["api_keys"]
    assert not any(k["name"] == "forged" for k in keys)

    # ...while the dashboard's own calls carry it, also after a reload (read back from the cookie).
    page.reload()
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-status", "live")
    page.goto(f"{server.url}/dashboard/admin/keys")
    page.get_by_test_id("api-key-name").fill("from the dashboard")
    page.get_by_test_id("api-key-create").click()
    key = page.get_by_test_id("api-key-value").inner_text()
    assert key.startswith("fd_")
    check = httpx.get(
        f"{server.url}/api/v1/sites", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert check.status_code == 200
    row = page.locator("[data-testid=api-key-row]", has_text="from the dashboard")
    row.get_by_test_id("api-key-revoke").click()
    row.get_by_test_id("api-key-revoke-confirm").click()
    expect(row).to_contain_text("revoked")
    shot(page, "api-keys")
    revoked = httpx.get(
        f"{server.url}/api/v1/sites", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert revoked.status_code == 401

    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()
    gone = page.evaluate("fetch('/api/v1/auth/me').then(r => r.status)")
    assert gone == 401
    no_csp_violations(page)


def test_events_reach_the_screen_within_500_ms(desk: Env, operator: str, dashboard: Any) -> None:
    server, _, _ = desk
    overview: Page = dashboard.new_page()
    sign_in(overview, server, operator, "/")
    expect(overview.get_by_test_id("tiles")).to_be_visible()
    inbox: Page = dashboard.new_page()
    inbox.goto(f"{server.url}/dashboard/inbox")
    expect(inbox.get_by_test_id("live-status")).to_have_attribute("data-status", "live")
    expect(inbox.locator("[data-testid=inbox-list], [data-testid=inbox-empty]")).to_be_visible()
    before = int(overview.get_by_test_id("tile-conversations-value").inner_text().replace(",", ""))

    visitor = widget_post(server, "/sessions", site_id=server.sites.main)
    token = visitor["access_token"]
    started = time.time() * 1000
    conversation = widget_post(server, "/conversations", token)["id"]
    new_conversation = {
        "overview": seen_at(overview, f"event:conversation.started:{conversation}") - started,
        "inbox": seen_at(inbox, f"row:{conversation}") - started,
    }
    sent = time.time() * 1000
    widget_post(
        server,
        f"/conversations/{conversation}/messages",
        token,
        client_id=secrets.token_hex(8),
        text="Is the shop open on Sunday?",
    )
    new_message = {
        "overview": seen_at(overview, f"event:message.created:{conversation}") - sent,
        "inbox": seen_at(inbox, f"seq:{conversation}:1") - sent,
    }
    measured = {"conversation": new_conversation, "message": new_message}
    print(f"\nevent → screen (ms): {json.dumps(measured)}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard-latency.json").write_text(json.dumps(measured, indent=2))
    for what, where in measured.items():
        for page_name, ms in where.items():
            assert ms < LATENCY_BUDGET_MS, f"{what} took {ms:.0f} ms to show in the {page_name}"

    expect(overview.get_by_test_id("tile-conversations-value")).not_to_have_text(str(before))
    row = inbox.locator(f"[data-testid=conversation-row][data-id='{conversation}']")
    # The preview shows the latest message: the visitor's, or already the bot's answer to it.
    expect(row.get_by_test_id("conversation-preview")).not_to_be_empty()
    shot(overview, "overview-live")
    shot(inbox, "inbox-live")
    no_csp_violations(overview)
    no_csp_violations(inbox)


def test_takeover_round_trip_with_the_real_widget(
    desk: Env, operator: str, dashboard: Any, browser: Any
) -> None:
    server, host, _ = desk
    visitor_context = browser.new_context(viewport={"width": 1024, "height": 768})
    try:
        visitor_page: Page = visitor_context.new_page()
        frame = open_chat(visitor_page, host.url(server.sites.main))
        send(frame, "When does the office open in the morning?")
        wait_answers(frame, 1)
        _, conversation = visitor_state(frame, server.sites.main)

        page: Page = dashboard.new_page()
        sign_in(page, server, operator, f"/inbox/{conversation}")
        view = page.get_by_test_id("conversation-view")
        expect(view.get_by_test_id("message")).to_have_count(2)
        expect(view.get_by_test_id("conversation-handler")).to_have_attribute("data-handler", "bot")
        page.get_by_test_id("takeover").click()
        expect(view.get_by_test_id("conversation-handler")).to_have_attribute(
            "data-handler", "operator"
        )
        page.get_by_test_id("reply-input").fill("Hello, this is Anna from the shop.")
        page.get_by_test_id("reply-send").click()
        expect(view.locator("[data-testid=message][data-role=operator] .text")).to_have_text(
            "Hello, this is Anna from the shop."
        )
        # The visitor sees the operator's reply live, in the widget.
        expect(frame.locator(".fd-msg.fd-operator")).to_contain_text("this is Anna")

        # While the operator has it the bot stays silent, and the visitor's message streams in.
        send(frame, "Great, can you hold a parcel for me?")
        expect(view.locator("[data-testid=message][data-role=visitor]")).to_have_count(2)
        expect(view.locator("[data-testid=message][data-role=visitor]").last).to_contain_text(
            "hold a parcel"
        )
        visitor_page.wait_for_timeout(1500)
        assert answers(frame).count() == 1, "the bot answered while an operator had the chat"
        shot(page, "inbox-takeover")
        visitor_page.screenshot(path=str(ARTIFACTS / "dashboard-takeover-visitor.png"))

        page.get_by_test_id("handback").click()
        expect(view.get_by_test_id("conversation-handler")).to_have_attribute("data-handler", "bot")
        send(frame, "When does the office close in the evening?")
        wait_answers(frame, 2)
        expect(view.locator("[data-testid=message][data-role=assistant]")).to_have_count(2)
        no_csp_violations(page)
    finally:
        visitor_context.close()


def test_admin_change_reaches_the_widget_without_a_restart(
    desk: Env, operator: str, dashboard: Any, browser: Any
) -> None:
    server, host, _ = desk
    pid = server.process.pid if server.process else None
    page: Page = dashboard.new_page()
    sign_in(page, server, operator, "/admin/sites")
    name = f"Bakery {secrets.token_hex(3)}"
    page.get_by_test_id("site-new").click()
    page.get_by_test_id("site-name").fill(name)
    page.get_by_test_id("site-create").click()
    expect(page.get_by_test_id("site-created")).to_be_visible()
    assert page.get_by_test_id("site-secret").inner_text().strip()
    page.locator("[data-testid=site-row] a", has_text=name).click()
    site_id = page.url.rsplit("/", 1)[-1]
    assert site_id.startswith("site_")

    def visitor_page() -> tuple[Any, Page]:
        context = browser.new_context(viewport={"width": 1024, "height": 768})
        return context, context.new_page()

    # Not allowed on the host page yet.
    context, before = visitor_page()
    try:
        before.goto(host.url(site_id))
        expect(before.locator(NOTICE)).to_have_text("This chat isn't available on this website.")
    finally:
        context.close()

    page.get_by_test_id("origins-input").fill(host.origin)
    page.get_by_test_id("save-origins").click()
    expect(page.get_by_test_id("saved-origins")).to_be_visible()
    greeting = "Fresh bread every morning. What can we bake for you?"
    page.get_by_test_id("greeting-input").fill(greeting)
    expect(page.get_by_test_id("preview-greeting")).to_have_text(greeting)
    page.get_by_test_id("save-general").click()
    expect(page.get_by_test_id("saved-general")).to_be_visible()
    page.get_by_test_id("qa-add").click()
    row = page.get_by_test_id("quick-action-row").last
    row.get_by_test_id("qa-id").fill("hours")
    row.get_by_test_id("qa-label").fill("Opening hours")
    row.get_by_test_id("qa-value").fill("When do you open?")
    page.get_by_test_id("save-quick-actions").click()
    expect(page.get_by_test_id("saved-quick_actions")).to_be_visible()
    page.get_by_test_id("responder-input").fill('{"kind": "openai"}')
    page.get_by_test_id("save-responder").click()
    expect(page.get_by_test_id("error-responder")).to_contain_text("responder")
    shot(page, "site-editor")

    context, after = visitor_page()
    try:
        frame = open_chat(after, host.url(site_id))
        expect(frame.locator(".fd-greeting")).to_have_text(greeting)
        action = frame.locator(".fd-actions .fd-action", has_text="Opening hours")
        expect(action).to_be_visible()
        action.click()
        expect(frame.locator(".fd-msg.fd-visitor")).to_contain_text("When do you open?")
        after.screenshot(path=str(ARTIFACTS / "dashboard-widget-after-change.png"))
    finally:
        context.close()
    assert server.process is not None and server.process.pid == pid, "the server restarted"
    audit = server.admin("GET", "/audit", params={"action": "site.updated"}).json()["entries"]
    assert any(e["target"] == site_id for e in audit)
    no_csp_violations(page)


def test_notification_bell_counts_live(desk: Env, operator: str, dashboard: Any) -> None:
    """A captured lead notifies operators by default: the bell's count rises live, the panel lists
    it, and marking everything read clears the count (also after a reload)."""
    server, _, _ = desk
    page: Page = dashboard.new_page()
    sign_in(page, server, operator)
    bell = page.get_by_test_id("bell")
    expect(bell).to_have_attribute("aria-label", re.compile(r"^Notifications, \d+ unread$"))
    unread = int(re.findall(r"\d+", bell.get_attribute("aria-label") or "")[0])

    visitor = widget_post(server, "/sessions", site_id=server.sites.main)
    email = f"lead-{secrets.token_hex(3)}@shop.example"
    widget_post(server, "/leads", visitor["access_token"], email=email, name="Ann")
    expect(bell).to_have_attribute(
        "aria-label", f"Notifications, {unread + 1} unread", timeout=15000
    )
    expect(page.get_by_test_id("bell-count")).to_have_text(str(unread + 1))
    bell.click()
    item = page.get_by_test_id("notification-item").filter(has_text=email)
    expect(item).to_contain_text("New lead")
    shot(page, "notification-bell")
    page.get_by_test_id("notifications-read-all").click()
    expect(page.get_by_test_id("bell-count")).to_have_count(0)
    page.reload()
    expect(page.get_by_test_id("bell")).to_have_attribute("aria-label", "Notifications, 0 unread")
    no_csp_violations(page)


def test_errors_page_groups_reports_live(desk: Env, operator: str, dashboard: Any) -> None:
    """Widget error reports with the same message fold into one group; the page, already open,
    shows it and its count as reports arrive, and expands its sample."""
    server, _, _ = desk
    page: Page = dashboard.new_page()
    sign_in(page, server, operator, "/errors")
    expect(page.locator("[data-testid=errors-table], [data-testid=errors-empty]")).to_be_visible()
    text = f"TypeError: basket {secrets.token_hex(3)} is undefined"
    visitor = widget_post(server, "/sessions", site_id=server.sites.main)
    report = {"type": "error.reported", "data": {"message": text, "context": "checkout"}}
    group = page.get_by_test_id("error-group").filter(has_text=text)
    for expected in ("1", "2"):
        widget_post(server, "/events", visitor["access_token"], events=[report])
        expect(group.locator("td.num")).to_have_text(expected, timeout=10000)
    group.locator("button.expand").click()
    expect(page.get_by_test_id("error-sample")).to_contain_text("checkout")
    shot(page, "errors-live")
    no_csp_violations(page)


def test_knowledge_upload_and_reindex(
    desk: Env, operator: str, dashboard: Any, tmp_path: Path
) -> None:
    """A Markdown file uploaded in the dashboard becomes a document with chunks; uploading a new
    version through its Re-index button replaces it (one document, new text)."""
    server, _, _ = desk
    made = server.admin(
        "POST", "/sites", json={"name": f"Library {secrets.token_hex(3)}", "allowed_origins": []}
    )
    assert made.status_code == 201, made.text
    site_id = made.json()["id"]
    page: Page = dashboard.new_page()
    sign_in(page, server, operator, "/admin/knowledge")
    page.get_by_test_id("site-filter").select_option(site_id)
    expect(page.get_by_test_id("knowledge-empty")).to_be_visible()
    first = tmp_path / "returns.md"
    first.write_text("# Returns\n\nReturns are accepted within 30 days of delivery.\n")
    page.get_by_test_id("knowledge-file").set_input_files(str(first))
    expect(page.get_by_test_id("knowledge-notice")).to_be_visible()
    row = page.get_by_test_id("document-row").filter(has_text="returns.md")
    expect(row).to_have_count(1, timeout=20000)
    updated = server.admin("GET", "/knowledge", params={"site_id": site_id}).json()["documents"]
    assert len(updated) == 1 and updated[0]["chunk_count"] >= 1
    first_indexed = updated[0]["updated_at"]

    second = tmp_path / "returns-v2.md"
    second.write_text("# Returns\n\nReturns are accepted within 60 days, free of charge.\n")
    with page.expect_file_chooser() as chooser:
        row.get_by_role("button", name="Re-index…").click()
    chooser.value.set_files(str(second))
    deadline = time.monotonic() + 20
    documents: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        documents = server.admin("GET", "/knowledge", params={"site_id": site_id}).json()[
            "documents"
        ]
        if documents and documents[0]["updated_at"] != first_indexed:
            break
        time.sleep(0.2)
    assert len(documents) == 1 and documents[0]["source"] == "returns.md"
    assert documents[0]["updated_at"] != first_indexed, "the new version was not indexed"
    expect(page.get_by_test_id("document-row")).to_have_count(1)
    shot(page, "knowledge-upload")
    no_csp_violations(page)


PAGES = [
    ("overview", "/", "tiles"),
    ("inbox", "/inbox", "inbox-list"),
    ("analytics", "/analytics", "funnel"),
    ("errors", "/errors", None),
    ("sites", "/admin/sites", "sites-table"),
    ("knowledge", "/admin/knowledge", "knowledge-table"),
    ("api-keys", "/admin/keys", "api-keys-table"),
    ("operators", "/admin/operators", "operators-table"),
    ("audit", "/admin/audit", "audit-table"),
    ("webhooks", "/admin/webhooks", None),
]


def test_every_page_renders(desk: Env, operator: str, dashboard: Any) -> None:
    server, _, _ = desk
    page: Page = dashboard.new_page()
    sign_in(page, server, operator)
    for name, path, ready in PAGES:
        page.goto(f"{server.url}/dashboard{path}")
        expect(page.get_by_test_id("live-status")).to_have_attribute("data-status", "live")
        if ready:
            expect(page.get_by_test_id(ready)).to_be_visible()
        expect(page.locator("[data-testid$='-loading']")).to_have_count(0)
        # Errors: the list, an empty list, or a clear word that the server has no such API.
        if name == "errors":
            expect(
                page.locator(
                    "[data-testid=errors-table], [data-testid=errors-empty],"
                    " [data-testid=errors-unavailable]"
                )
            ).to_be_visible()
        expect(page.locator("[data-testid$='-error'][role=alert]")).to_have_count(0)
        expect(page.get_by_test_id("bell")).to_have_attribute(
            "aria-label", re.compile(r"^Notifications")
        )
        shot(page, name)
    page.get_by_test_id("bell").click()
    expect(page.get_by_test_id("notification-panel")).to_be_visible()
    shot(page, "notifications")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("notification-panel")).to_have_count(0)

    page.goto(f"{server.url}/dashboard/admin/sites/{server.sites.main}")
    expect(page.get_by_test_id("widget-preview")).to_be_visible()
    expect(page.get_by_test_id("embed-snippet")).to_contain_text(server.sites.main)
    shot(page, "site")
    page.goto(f"{server.url}/dashboard/no/such/page")
    expect(page.get_by_test_id("not-found")).to_be_visible()
    no_csp_violations(page)

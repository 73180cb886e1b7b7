"""The widget on a customer's page: a full chat with a streamed, cited answer; the page API;
identity; the SSE fallback; quick actions, offers, the lead form, and analytics."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Desk, HostServer
from tests.browser.helpers import (
    IFRAME,
    LAUNCHER,
    answers,
    chat_frame,
    open_chat,
    posted_events,
    send,
    visitor_state,
    wait_answers,
    wait_online,
    wait_sent,
)

pytestmark = pytest.mark.browser
Env = tuple[Desk, HostServer, HostServer]

# Records, inside the chat frame, whether an answer was ever shown while still streaming.
STREAM_WATCH = """
if (location.pathname.startsWith('/w/')) {
  new MutationObserver(() => {
    if (document.querySelector('.fd-streaming')) window.__sawStreaming = true;
  }).observe(document, {subtree: true, childList: true});
}
"""


def test_full_chat_with_streamed_cited_answer(desk: Env, context: Any) -> None:
    server, host, _ = desk
    context.add_init_script(STREAM_WATCH)
    page: Page = context.new_page()
    page.goto(host.url(server.sites.main))
    expect(page.locator(LAUNCHER)).to_be_visible()
    assert page.locator(IFRAME).count() == 0, "no chat code before the first open"
    frame = open_chat(page)
    expect(frame.locator(".fd-greeting")).to_have_text("Hi! How can I help?")
    send(frame, "When does the office open in the morning?")
    wait_answers(frame, 1)
    answer = answers(frame).first
    expect(answer.locator(".fd-text")).to_contain_text("nine in the morning")
    expect(answer.locator(".fd-sources")).to_contain_text("Opening hours")
    assert frame.evaluate("window.__sawStreaming === true"), "the answer was not streamed"
    expect(frame.locator(".fd-visitor .fd-state")).to_have_attribute("data-state", "sent")
    page.wait_for_function("window.__events.includes('message:assistant')")
    assert page.evaluate("window.__events")[0] == "open"
    token, conversation = visitor_state(frame, server.sites.main)
    stored = server.widget_messages(token, conversation)
    assert [m["role"] for m in stored] == ["visitor", "assistant"]


def test_page_api_queue_toggle_and_destroy(desk: Env, context: Any) -> None:
    server, host, _ = desk
    page: Page = context.new_page()
    page.goto(host.url(server.sites.main, calls=json.dumps([["open"]])))
    frame_el = page.locator(IFRAME)
    expect(frame_el).to_be_visible()  # FrontDesk("open") queued before the loader ran
    wait_online(chat_frame(page))
    page.evaluate("FrontDesk('toggle')")
    expect(frame_el).to_be_hidden()
    page.evaluate("FrontDesk('open')")
    expect(frame_el).to_be_visible()
    chat_frame(page).locator(".fd-close").click()  # the frame asks the loader to close
    expect(frame_el).to_be_hidden()
    assert page.evaluate("window.__events") == ["open", "close", "open", "close"]
    page.evaluate("FrontDesk('destroy')")
    assert page.evaluate("document.querySelector('[data-frontdesk]') === null")
    assert page.evaluate("typeof window.FrontDesk") == "undefined"


def test_identify_verifies_the_visitor(desk: Env, context: Any) -> None:
    server, host, _ = desk
    site, secret = server.sites.main, server.sites.main_secret
    expires = int(time.time()) + 600
    payload = f"{site}|user-42|{expires}".encode()
    signature = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    identity = {"user_id": "user-42", "expires": expires, "signature": signature}
    page: Page = context.new_page()
    with page.expect_response(lambda r: r.url.endswith("/api/widget/v1/sessions")) as issued:
        open_chat(page, host.url(site, calls=json.dumps([["identify", identity]])))
    assert issued.value.status == 201
    assert issued.value.json()["verified"] is True


def test_sse_fallback_when_websockets_are_blocked(desk: Env, context: Any) -> None:
    server, host, _ = desk
    context.add_init_script(
        "if (location.pathname.startsWith('/w/')) {"
        " window.WebSocket = function () { throw new Error('blocked by the network'); }; }"
    )
    page: Page = context.new_page()
    frame = open_chat(page, host.url(server.sites.main))
    send(frame, "When does the office close?")
    wait_answers(frame, 1, timeout=30000)
    expect(answers(frame).first).to_contain_text("six in the evening")
    wait_sent(frame)


def test_quick_actions_offers_and_analytics(desk: Env, context: Any) -> None:
    server, host, _ = desk
    context.route(
        "https://docs.example/**",
        lambda route: route.fulfill(body="<h1>Docs</h1>", content_type="text/html"),
    )
    page: Page = context.new_page()
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    frame = open_chat(page, host.url(server.sites.main))
    frame.get_by_role("button", name="Opening hours").click()
    wait_answers(frame, 1)
    expect(frame.locator(".fd-visitor").first).to_contain_text("When do you open?")
    with context.expect_page() as popup_info:
        frame.get_by_role("button", name="Docs").click()
    popup = popup_info.value
    assert popup.url.startswith("https://docs.example/guide")
    assert popup.evaluate("window.opener") is None
    popup.close()
    offer = frame.locator(".fd-offer[data-offer-id=guide]")
    expect(offer).to_contain_text("Free sizing guide")
    offer.get_by_role("button", name="Unlock").click()
    offer.locator("input[name=email]").fill("not-an-email")
    offer.get_by_role("button", name="Get access").click()
    expect(offer.locator(".fd-form-error")).to_be_visible()
    offer.locator("input[name=email]").fill("ada@example.com")
    offer.get_by_role("button", name="Get access").click()
    content = frame.locator(".fd-offer[data-offer-id=guide] .fd-offer-content")
    expect(content.locator("strong")).to_have_text("Measure twice.")
    link = content.locator("a")
    expect(link).to_have_attribute("rel", "noopener noreferrer")

    def seen() -> set[str]:
        return {e["type"] for e in posted_events(requests)}

    wanted = {
        "widget.opened",
        "quick_action.clicked",
        "offer.viewed",
        "offer.clicked",
        "offer.submitted",
        "message.sent",
        "message.answered",
        "widget.timing",
    }
    deadline = time.monotonic() + 15
    while not wanted <= seen() and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert wanted <= seen(), wanted - seen()
    sent = next(e for e in posted_events(requests) if e["type"] == "message.sent")
    assert sent["data"]["ack_ms"] >= 0
    page.reload()  # the server remembers the unlocked offer
    frame = open_chat(page)
    expect(frame.locator(".fd-offer[data-offer-id=guide] .fd-offer-content")).to_be_visible()


def test_graceful_reply_offers_the_lead_form(desk: Env, context: Any) -> None:
    server, host, _ = desk
    page: Page = context.new_page()
    frame = open_chat(page, host.url(server.sites.failing))
    send(frame, "Is anyone there?")
    lead = frame.locator(".fd-lead")
    expect(lead).to_be_visible(timeout=45000)
    lead.locator("input[name=email]").fill("grace@example.com")
    with page.expect_response(lambda r: r.url.endswith("/api/widget/v1/leads")) as created:
        lead.get_by_role("button", name="Send").click()
    assert created.value.status == 201
    expect(lead).to_contain_text("We'll be in touch")

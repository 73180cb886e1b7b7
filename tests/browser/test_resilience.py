"""The widget under bad conditions: offline typing, a server restart, rate limits, and access
tokens rotating while the chat is open."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Desk, HostServer
from tests.browser.helpers import (
    answers,
    open_chat,
    send,
    visitor_state,
    wait_answers,
    wait_online,
    wait_sent,
)

pytestmark = pytest.mark.browser
Env = tuple[Desk, HostServer, HostServer]


def visitor_texts(server: Desk, token: str, conversation: str) -> list[str]:
    messages = server.widget_messages(token, conversation)
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    return [m["text"] for m in messages if m["role"] == "visitor"]


def test_offline_messages_are_sent_once_in_order(desk: Env, context: Any) -> None:
    server, host, _ = desk
    page: Page = context.new_page()
    frame = open_chat(page, host.url(server.sites.main))
    send(frame, "first, while online")
    wait_answers(frame, 1)
    context.set_offline(True)
    expect(frame.locator(".fd-status")).to_have_attribute("data-status", "offline")
    queued = ["offline one", "offline two", "offline three"]
    for text in queued:
        send(frame, text)
    expect(frame.locator(".fd-pending")).to_have_count(3)
    expect(frame.locator(".fd-pending .fd-state").first).to_have_text("Waiting for connection")
    context.set_offline(False)
    wait_online(frame)
    wait_sent(frame)
    wait_answers(frame, 4)
    token, conversation = visitor_state(frame, server.sites.main)
    assert visitor_texts(server, token, conversation) == ["first, while online", *queued]


def test_rate_limit_shows_a_countdown(desk: Env, context: Any) -> None:
    server, host, _ = desk
    page: Page = context.new_page()
    frame = open_chat(page, host.url(server.sites.limited))
    send(frame, "hello")
    wait_sent(frame)
    send(frame, "hello again")
    banner = frame.locator(".fd-banner")
    expect(banner).to_have_text(re.compile(r"You can send again in \d+:\d\d"))
    first = banner.inner_text()
    expect(banner).not_to_have_text(first, timeout=3000)  # it counts down
    expect(frame.locator(".fd-pending")).to_have_count(1)  # kept, to be sent after the wait


def test_russian_locale(desk: Env, browser: Any) -> None:
    server, host, _ = desk
    context = browser.new_context(locale="ru-RU", viewport={"width": 1024, "height": 768})
    try:
        page: Page = context.new_page()
        page.goto(host.url(server.sites.main))
        expect(page.get_by_role("button", name="Открыть чат")).to_be_visible()
        frame = open_chat(page)
        expect(frame.locator(".fd-status")).to_have_text("В сети")
        expect(frame.locator(".fd-input")).to_have_attribute("placeholder", "Напишите сообщение…")
        expect(frame.get_by_role("button", name="Открыть")).to_be_visible()  # the offer
        context.set_offline(True)
        expect(frame.locator(".fd-status")).to_contain_text("Нет связи")
        context.set_offline(False)
        wait_online(frame)
    finally:
        context.close()


def test_token_rotation_is_invisible(desk: Env, context: Any) -> None:
    server, host, _ = desk
    context.clock.install()
    page: Page = context.new_page()
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    frame = open_chat(page, host.url(server.sites.main))
    send(frame, "When does the office open?")
    wait_answers(frame, 1)
    # The access token lives 60 s; the widget refreshes with a quarter left and re-authenticates
    # the open socket. Jump the page's clock past that point.
    with page.expect_response(lambda r: r.url.endswith("/sessions/refresh")) as refreshed:
        context.clock.fast_forward(46_000)
    assert refreshed.value.status == 200
    send(frame, "When does the office close?")
    wait_answers(frame, 2)
    expect(answers(frame).nth(1)).to_contain_text("six in the evening")
    assert len(sockets) == 1, "the socket was re-authenticated, not reopened"
    expect(frame.locator(".fd-banner")).to_be_hidden()
    expect(frame.locator(".fd-status")).to_have_attribute("data-status", "online")
    # An HTTP call answered 401 (an expired token): refreshed and retried without a word.
    hits: list[str] = []

    def expire_once(route: Any) -> None:
        if hits:
            route.fallback()
            return
        hits.append(route.request.url)
        body = '{"error": {"code": "token_expired", "message": "The access token has expired."}}'
        route.fulfill(status=401, content_type="application/json", body=body)

    context.route(re.compile(r".*/api/widget/v1/offers$"), expire_once)
    page.reload()
    with page.expect_response(lambda r: r.url.endswith("/sessions/refresh")):
        frame = open_chat(page)
    expect(frame.locator(".fd-offer[data-offer-id=guide]")).to_be_visible()
    assert len(hits) == 1
    expect(frame.locator(".fd-visitor")).to_have_count(2)
    expect(frame.locator(".fd-banner")).to_be_hidden()


def test_server_restart_resumes_without_loss(desk: Env, context: Any) -> None:
    server, host, _ = desk
    page: Page = context.new_page()
    frame = open_chat(page, host.url(server.sites.main))
    send(frame, "before the restart")
    wait_answers(frame, 1)
    server.stop()
    expect(frame.locator(".fd-status")).to_have_attribute("data-status", "reconnecting")
    send(frame, "during the restart")
    expect(frame.locator(".fd-pending")).to_have_count(1)
    server.start()
    wait_online(frame, timeout=40000)
    wait_sent(frame)
    wait_answers(frame, 2)
    token, conversation = visitor_state(frame, server.sites.main)
    assert visitor_texts(server, token, conversation) == [
        "before the restart",
        "during the restart",
    ]

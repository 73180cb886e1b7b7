"""Hostile content renders inert (visitor, assistant, operator messages and citations), and the
widget refuses pages its site does not allow: the loader says so, the frame will not be framed."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Frame, Page, expect

from tests.browser.conftest import Desk, HostServer
from tests.browser.helpers import (
    IFRAME,
    LAUNCHER,
    NOTICE,
    answers,
    open_chat,
    send,
    visitor_state,
    wait_answers,
    wait_sent,
)

pytestmark = pytest.mark.browser
Env = tuple[Desk, HostServer, HostServer]

FLAG = "window.__xss=1"
CORPUS = [
    f"<script>{FLAG};alert('script')</script>",
    f"<img src=x onerror=\"{FLAG};alert('img')\">",
    f'<svg onload="{FLAG};alert(\'svg\')"><circle r="5"/></svg>',
    f"<a href=\"javascript:{FLAG};alert('a')\">click me</a>",
    f"[markdown link](javascript:{FLAG};alert('md'))",
    f"[data link](data:text/html,<script>{FLAG}</script>)",
    f"![image](javascript:{FLAG})",
    f'<iframe src="javascript:{FLAG}"></iframe>',
    f'**bold <b onmouseover="{FLAG}">x</b>** `<script>{FLAG}</script>`',
    f'[nested [x](javascript:{FLAG})](https://ok.example "t")',
    f"<details open ontoggle=\"{FLAG};alert('details')\">",
    "```\n<script>alert('fenced')</script>\n```",
    f"javascript:{FLAG} and vbscript:msgbox and <style>body{{display:none}}</style>",
]


def assert_inert(page: Page, frame: Frame, dialogs: list[str]) -> None:
    """No dialog, no flag set, no active content or unsafe link in the chat."""
    page.wait_for_timeout(300)  # give any injected handler a chance to run
    assert dialogs == []
    assert page.evaluate("window.__xss") is None
    assert frame.evaluate("window.__xss") is None
    messages = frame.locator(".fd-messages")
    for tag in (
        "script",
        "img",
        "svg",
        "iframe",
        "style",
        "details:not(.fd-sources)",
        "b",
        "object",
    ):
        assert messages.locator(tag).count() == 0, tag
    hrefs = frame.eval_on_selector_all(".fd-chat a", "els => els.map(a => [a.href, a.rel])")
    for href, rel in hrefs:
        assert href.startswith(("http://", "https://", "mailto:")), href
        assert rel == "noopener noreferrer"
    handlers = frame.evaluate(
        "[...document.querySelectorAll('.fd-chat *')]"
        ".flatMap(el => [...el.attributes].map(a => a.name)).filter(n => n.startsWith('on'))"
    )
    assert handlers == []


def test_xss_corpus_renders_inert(desk: Env, context: Any) -> None:
    server, host, _ = desk
    page: Page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    frame = open_chat(page, host.url(server.sites.main))
    send(frame, "What does the zebra protocol keep inert?")  # the answer quotes the payloads
    wait_answers(frame, 1)
    expect(answers(frame).first.locator(".fd-sources")).to_contain_text("Zebra safety handbook")
    answers(frame).first.locator(".fd-sources summary").click()
    for payload in CORPUS:
        send(frame, payload)
    wait_sent(frame)
    expect(frame.locator(".fd-visitor")).to_have_count(len(CORPUS) + 1)
    expect(frame.locator(".fd-visitor").nth(1)).to_contain_text("<script>")  # shown as text
    token, conversation = visitor_state(frame, server.sites.main)
    for payload in CORPUS:
        server.add_operator_message(conversation, payload)
    page.reload()
    frame = open_chat(page)
    expect(frame.locator(".fd-operator")).to_have_count(len(CORPUS))
    for details in frame.locator(".fd-sources summary").all():
        details.click()
    expect(frame.locator(".fd-operator a[href^='https://ok.example']")).to_have_count(1)
    assert_inert(page, frame, dialogs)
    stored = server.widget_messages(token, conversation)
    assert sum(1 for m in stored if m["role"] == "operator") == len(CORPUS)
    assert any("<script>" in m["text"] for m in stored if m["role"] == "assistant")


def test_disallowed_origin_gets_a_message_and_no_chat(desk: Env, context: Any) -> None:
    server, _, refused = desk
    page: Page = context.new_page()
    page.goto(refused.url(server.sites.main))
    expect(page.locator(NOTICE)).to_have_text("This chat isn't available on this website.")
    assert page.locator(LAUNCHER).count() == 0
    assert page.locator(IFRAME).count() == 0


def test_frame_refuses_a_disallowed_parent(desk: Env, context: Any) -> None:
    server, host, refused = desk
    page: Page = context.new_page()
    refusal = lambda m: "frame-ancestors" in m.text  # noqa: E731
    with page.expect_console_message(refusal, timeout=10000):
        page.goto(f"{refused.origin}/frame?site={server.sites.main}")
    chats = [f for f in page.frames if f != page.main_frame]
    assert chats, "the iframe element exists"
    assert all(f.locator(".fd-chat").count() == 0 for f in chats)
    # The same page on an allowed origin frames the chat fine.
    page.goto(f"{host.origin}/frame?site={server.sites.main}")
    expect(page.frame_locator("#direct").locator(".fd-chat")).to_be_visible()

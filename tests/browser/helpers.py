"""Page helpers for the browser suite: open the widget on a host page, chat, read its state."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import Frame, Page, expect

LAUNCHER = "div[data-frontdesk] button[part=launcher]"
NOTICE = "div[data-frontdesk] [part=notice]"
IFRAME = "div[data-frontdesk] iframe"
ANSWER = ".fd-msg.fd-assistant[data-id]"


def chat_frame(page: Page) -> Frame:
    """The widget's iframe as a Frame (after the first open)."""
    handle = page.locator(IFRAME).element_handle()
    frame = handle.content_frame() if handle else None
    assert frame is not None, "the chat iframe has no content"
    return frame


def open_chat(page: Page, url: str | None = None) -> Frame:
    """Load the host page (if given), click the launcher, wait until the chat is online."""
    if url:
        page.goto(url)
    page.locator(LAUNCHER).click()
    expect(page.locator(IFRAME)).to_be_visible()
    frame = chat_frame(page)
    wait_online(frame)
    return frame


def wait_online(frame: Frame, timeout: float = 20000) -> None:
    expect(frame.locator(".fd-status")).to_have_attribute("data-status", "online", timeout=timeout)


def send(frame: Frame, text: str) -> None:
    box = frame.locator(".fd-input")
    box.fill(text)
    box.press("Enter")


def answers(frame: Frame) -> Any:
    return frame.locator(ANSWER)


def wait_answers(frame: Frame, count: int, timeout: float = 20000) -> None:
    expect(answers(frame)).to_have_count(count, timeout=timeout)


def wait_sent(frame: Frame, timeout: float = 20000) -> None:
    """No visitor message is still queued, sending or failed."""
    expect(frame.locator(".fd-pending")).to_have_count(0, timeout=timeout)


def visitor_state(frame: Frame, site_id: str) -> tuple[str, str]:
    """(access token, conversation id) as the widget stored them for this site."""
    raw = frame.evaluate(
        """(site) => [localStorage.getItem(`frontdesk:${site}:session`),
                      localStorage.getItem(`frontdesk:${site}:conversation`)]""",
        site_id,
    )
    session, conversation = (json.loads(x) for x in raw)
    return str(session["access_token"]), str(conversation["id"])


def posted_events(requests: list[Any]) -> list[dict[str, Any]]:
    """Every analytics event in the POST /events requests seen so far."""
    events: list[dict[str, Any]] = []
    for request in requests:
        if request.method == "POST" and re.search(r"/api/widget/v1/events$", request.url):
            events.extend(json.loads(request.post_data or "{}").get("events", []))
    return events

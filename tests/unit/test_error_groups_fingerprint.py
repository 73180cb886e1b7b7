"""Error fingerprints group by shape, not instance; samples keep no secrets and stay small."""

from __future__ import annotations

import json

from frontdesk.actions.errors import (
    fingerprint,
    normalise_message,
    server_error_report,
    top_js_frame,
    widget_error_report,
)
from frontdesk.observability.scrub import bounded, scrub, scrub_text

CHROME = (
    "TypeError: Cannot read properties of undefined (reading 'seq')\n"
    "    at applyFrame (https://fd.example/w/assets/frame-BdU2x_9Q.js:1:20417)\n"
    "    at WebSocket.<anonymous> (https://fd.example/w/assets/frame-BdU2x_9Q.js:1:18022)"
)


def test_numbers_ids_urls_and_emails_are_placeholders() -> None:
    message = (
        "Order 1234 for conv_0a1b2c3d4e5f6g7h8i9j0k1l2 at https://shop.example/o/1234?x=1 "
        "by ann@example.com failed after 2.5s (id 3f9a2c1b-0000-4000-8000-00000000abcd, "
        "hash deadbeef42)"
    )
    assert normalise_message(message) == (
        "Order <n> for <id> at <url> by <email> failed after <n>s (id <id>, hash <hex>)"
    )


def test_same_shape_same_fingerprint_other_shape_other() -> None:
    one = fingerprint("TypeError", "Order 1234 not found", "at f (app.js:<n>:<n>)")
    two = fingerprint("TypeError", "Order 98 not found", "at f (app.js:<n>:<n>)")
    assert one == two and len(one) == 64
    assert one != fingerprint("TypeError", "Order 98 not found", "at g (app.js:<n>:<n>)")
    assert one != fingerprint("RangeError", "Order 98 not found", "at f (app.js:<n>:<n>)")
    assert one != fingerprint("TypeError", "Customer 98 not found", "at f (app.js:<n>:<n>)")


def test_top_frame_drops_origin_line_column_and_bundle_hash() -> None:
    assert top_js_frame(CHROME) == "at applyFrame (frame-<hash>.js:<n>:<n>)"
    # The same code after a rebuild (new hash, shifted columns) on another host.
    rebuilt = CHROME.replace("BdU2x_9Q", "Zq81Lm0P").replace("20417", "20533")
    assert top_js_frame(rebuilt.replace("fd.example", "chat.other.example")) == top_js_frame(CHROME)
    firefox = "applyFrame@https://fd.example/w/assets/frame-BdU2x_9Q.js:1:20417\n"
    assert top_js_frame(firefox) == "applyFrame@frame-<hash>.js:<n>:<n>"
    assert top_js_frame("no frames here") == ""


def test_widget_report_kind_message_and_scrubbed_sample() -> None:
    report = widget_error_report(
        site_id="site_1",
        visitor_id="vis_1",
        client_at=1700000000.5,
        data={
            "message": "Cannot read properties of undefined (reading 'seq')",
            "stack": CHROME,
            "context": "window.onerror",
            "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
            "url": "https://shop.example/cart?token=abc123&page=2",
        },
    )
    assert report.kind == "TypeError" and report.source == "widget"
    assert report.frame.startswith("at applyFrame")
    sample = json.dumps(report.sample)
    assert "eyJ" not in sample and "abc123" not in sample and "page=2" in sample
    assert report.sample["client_at"] == 1700000000.5


def test_server_report_names_our_frame_and_keeps_no_secret() -> None:
    def failing() -> None:
        raise RuntimeError("upstream said 401 for Bearer sk-live-abcdef and fd_abcdefgh12345678")

    try:
        failing()
    except RuntimeError as exc:
        report = server_error_report(exc, {"method": "GET", "path": "/x"})
    assert report.kind == "RuntimeError"
    assert report.frame.endswith("test_error_groups_fingerprint.py:failing")
    assert "sk-live" not in report.message and "fd_abcdefgh" not in report.message
    assert "sk-live" not in report.sample["traceback"]
    assert report.sample["method"] == "GET"


def test_scrub_keys_headers_and_text() -> None:
    event = {
        "request": {
            "headers": {"Authorization": "Bearer x", "Cookie": "a=b", "Accept": "text/html"},
            "cookies": {"fd_session": "s"},
            "url": "https://fd.example/api?api_key=k1",
        },
        "pairs": [["authorization", "Bearer y"], ["x-request-id", "r1"]],
        "message": "mail ann@example.com, key whsec_abc",
    }
    clean = scrub(event)
    assert clean["request"]["headers"] == {
        "Authorization": "[redacted]",
        "Cookie": "[redacted]",
        "Accept": "text/html",
    }
    assert clean["request"]["cookies"] == "[redacted]"
    assert clean["request"]["url"] == "https://fd.example/api?api_key=[redacted]"
    assert clean["pairs"] == [["authorization", "[redacted]"], ["x-request-id", "r1"]]
    assert clean["message"] == "mail [email], key [redacted]"
    assert scrub_text("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic [redacted]"


def test_bounded_cuts_strings_lists_and_depth() -> None:
    value = {"s": "x" * 5000, "l": list(range(100)), "d": {"a": {"b": {"c": {"d": {"e": 1}}}}}}
    small = bounded(value)
    assert len(small["s"]) == 2001 and len(small["l"]) == 30
    assert small["d"]["a"]["b"]["c"] == "…"
    assert len(json.dumps(bounded({"k": ["y" * 3000] * 50}))) < 70_000

"""Hostile bodies get documented codes, never a 500, never stored."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Visitor

BASE = "/api/widget/v1"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,  # deep nesting
        b'{"site_id": "' + bytes([0xFF, 0xFE, 0xFD]) + b'"}',  # invalid UTF-8
        b'{"site_id": ' + b"9" * 5000 + b"}",  # beyond the integer parsing limit
        b'{"site_id": "s", "visitor_id": NaN}',
        b"",
        b"\x00\x00",
    ],
)
async def test_unparseable_bodies(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post(
        f"{BASE}/sessions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "event",
    [
        {"type": "widget.opened", "at": 1e400},
        {"type": "widget.opened", "data": {"x": float("nan")}},
        {
            "type": "widget.opened",
            "data": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {}}}}}}}}}},
        },
        {"type": "widget.opened", "data": {"n": 10**30}},
        {"type": "Not A Type"},
        {"type": "x" * 65},
    ],
)
async def test_hostile_event_payloads(
    client: httpx.AsyncClient, visitor: Visitor, event: dict[str, object]
) -> None:
    import json

    body = json.dumps({"events": [event]}, allow_nan=True)
    response = await client.post(
        f"{BASE}/events",
        content=body,
        headers={**visitor.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


async def test_too_many_events(client: httpx.AsyncClient, visitor: Visitor) -> None:
    response = await client.post(
        f"{BASE}/events",
        headers=visitor.auth,
        json={"events": [{"type": "widget.opened"}] * 51},
    )
    assert response.status_code == 422


async def test_streamed_body_over_limit(client: httpx.AsyncClient, visitor: Visitor) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b"x" * 1024

    conversation_id = await visitor.conversation()
    response = await client.post(
        f"{BASE}/conversations/{conversation_id}/messages",
        content=chunks(),
        headers={**visitor.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_repeated_query_parameters_are_refused(
    client: httpx.AsyncClient, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    response = await client.get(
        f"{BASE}/conversations/{conversation_id}/messages?limit=1&limit=2", headers=visitor.auth
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("since", ["0.0", "2026-11-22", "0001-01-01T00:00:00+14:00", "yesterday"])
async def test_time_parameters_are_strict(client: httpx.AsyncClient, services, since: str) -> None:  # type: ignore[no-untyped-def]
    from frontdesk.actions.apikeys import do_create_api_key

    async with services.db.session_scope() as session:
        key = (await do_create_api_key(session, scopes=["read"])).key
    for path in ("/api/v1/metrics", "/api/v1/activity"):
        response = await client.get(
            path, params={"since": since}, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 422, (path, since, response.text)

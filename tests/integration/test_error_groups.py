"""Error groups (O5): widget error reports and unhandled server errors are grouped by
fingerprint, counted and listed through `/api/v1/errors`, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.actions.errors import ErrorReport, do_record_error
from frontdesk.models import ErrorGroup, EventRecord, utcnow
from frontdesk.services import Services
from tests.conftest import ORIGIN, PUBLIC_URL, SiteInfo, Visitor, make_site

API = "/api/v1"
STACK = "TypeError: boom\n    at sendMessage (https://fd.example/w/assets/frame-a1b2c3d4.js:1:{})"


async def key(services: Services, *scopes: str, site_id: str | None = None) -> dict[str, str]:
    async with services.db.session_scope() as session:
        created = await do_create_api_key(session, scopes=list(scopes), site_id=site_id)
    return {"Authorization": f"Bearer {created.key}"}


def error_event(message: str, column: int = 10, **data: Any) -> dict[str, Any]:
    return {
        "type": "error.reported",
        "at": time.time(),
        "data": {"message": message, "stack": STACK.format(column), **data},
    }


async def report(client: httpx.AsyncClient, visitor: Visitor, *events: dict[str, Any]) -> None:
    response = await client.post(
        "/api/widget/v1/events", headers=visitor.auth, json={"events": list(events)}
    )
    assert response.status_code == 202, response.text


@pytest.fixture
async def raw_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the 500 response instead of the re-raised exception."""

    async def boom(n: int) -> None:
        raise RuntimeError(f"ledger row {n} vanished (token fd_abcdefgh12345678)")

    app.add_api_route("/test/boom/{n}", boom, methods=["GET"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url=PUBLIC_URL, headers={"Origin": ORIGIN}
    ) as http:
        yield http


async def test_widget_errors_group_by_shape(
    client: httpx.AsyncClient, services: Services, site: SiteInfo, visitor: Visitor
) -> None:
    reader = await key(services, "read")
    await report(
        client,
        visitor,
        error_event("Order 1234 not found", column=10),
        error_event("Order 98 not found", column=57),  # same bug: other number, other column
        error_event("Cart is empty"),
    )
    page = (await client.get(f"{API}/errors", headers=reader)).json()
    assert page["next_cursor"] is None
    by_count = sorted(page["items"], key=lambda item: item["count"])
    assert [item["count"] for item in by_count] == [1, 2]
    empty, order = by_count
    assert empty["message"] == "Cart is empty"
    assert order["message"] == "Order 98 not found"  # the newest message and sample are kept
    assert order["kind"] == "TypeError" and order["source"] == "widget"
    assert order["site_id"] == site.id
    assert order["sample"]["visitor_id"] == visitor.id
    assert order["sample"]["data"]["stack"].endswith(":1:57)")
    assert set(order) == {
        "id", "fingerprint", "source", "site_id", "kind", "message", "count",
        "first_seen", "last_seen", "sample",
    }  # fmt: skip
    assert order["first_seen"] <= order["last_seen"]

    # Each error.reported event names its group, and the metrics count the same reports.
    async with services.db.read_scope() as session:
        events = (
            await session.execute(select(EventRecord).where(EventRecord.type == "error.reported"))
        ).scalars()
        named = sorted(e.data["error_group_id"] for e in events)
    assert named == sorted([order["id"], order["id"], empty["id"]])
    metrics = (await client.get(f"{API}/metrics", headers=reader)).json()
    assert metrics["errors"] == sum(item["count"] for item in page["items"]) == 3

    detail = await client.get(f"{API}/errors/{order['id']}", headers=reader)
    assert detail.status_code == 200 and detail.json() == order


async def test_same_error_on_two_sites_is_two_groups(
    client: httpx.AsyncClient, services: Services, site: SiteInfo, visitor: Visitor
) -> None:
    other = await make_site(services, name="Other")
    response = await client.post("/api/widget/v1/sessions", json={"site_id": other.id})
    other_visitor = Visitor(client, response.json())
    await report(client, visitor, error_event("Cart is empty"))
    await report(client, other_visitor, error_event("Cart is empty"))
    reader = await key(services, "read")
    items = (await client.get(f"{API}/errors", headers=reader)).json()["items"]
    assert sorted(i["site_id"] for i in items) == sorted([site.id, other.id])
    assert items[0]["fingerprint"] == items[1]["fingerprint"]

    # A key limited to one site sees that site's groups only, and no server errors.
    limited = await key(services, "read", site_id=site.id)
    mine = (await client.get(f"{API}/errors", headers=limited)).json()["items"]
    assert [i["site_id"] for i in mine] == [site.id]
    foreign = next(i for i in items if i["site_id"] == other.id)
    hidden = await client.get(f"{API}/errors/{foreign['id']}", headers=limited)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    asked = await client.get(f"{API}/errors", headers=limited, params={"site_id": other.id})
    assert asked.json() == {"items": [], "next_cursor": None}


async def test_pagination_filters_and_ties(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    now = utcnow().replace(microsecond=0)
    same_moment = now - timedelta(minutes=5)
    async with services.db.session_scope() as session:
        for i in range(7):
            # Three groups share one last_seen: the cursor must break ties by id.
            at = same_moment if i < 3 else now - timedelta(minutes=10 + i)
            await do_record_error(
                session,
                ErrorReport("widget", site.id, "Error", f"failure kind {'abcdefg'[i]}", "", {}),
                at=at,
            )
        await do_record_error(
            session, ErrorReport("server", None, "KeyError", "'x'", "a.py:f", {}), at=now
        )
    reader = await key(services, "read")
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(f"{API}/errors", headers=reader, params=params)).json()
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 8
    assert len({item["id"] for item in seen}) == 8
    keys = [(item["last_seen"], item["id"]) for item in seen]
    assert keys == sorted(keys, reverse=True)
    assert seen[0]["source"] == "server" and seen[0]["site_id"] is None

    async def ids(**params: Any) -> list[str]:
        response = await client.get(f"{API}/errors", headers=reader, params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert len(await ids(source="widget")) == 7
    assert len(await ids(source="server")) == 1
    assert len(await ids(site_id=site.id)) == 7
    since = (now - timedelta(minutes=6)).isoformat()
    assert len(await ids(since=since)) == 4  # the server error and the three tied groups
    assert await ids(since=(now + timedelta(minutes=1)).isoformat()) == []


async def test_server_errors_are_recorded_and_grouped(
    raw_client: httpx.AsyncClient, client: httpx.AsyncClient, services: Services
) -> None:
    secret = "Bearer fd_thisisnotarealkeybutlookslikeone"
    first = await raw_client.get(
        "/test/boom/17", headers={"Authorization": secret, "X-Request-ID": "req-abc-12345"}
    )
    assert first.status_code == 500
    assert first.json() == {
        "error": {"code": "internal_error", "message": "Something went wrong on our side."}
    }
    assert first.headers["x-request-id"] == "req-abc-12345"
    second = await raw_client.get("/test/boom/90210")
    assert second.status_code == 500
    reader = await key(services, "read")
    items = (await client.get(f"{API}/errors", headers=reader)).json()["items"]
    assert len(items) == 1
    group = items[0]
    assert group["source"] == "server" and group["site_id"] is None and group["count"] == 2
    assert group["kind"] == "RuntimeError"
    assert group["message"].startswith("ledger row 90210 vanished (token [redacted])")
    sample = group["sample"]
    assert sample["method"] == "GET" and sample["route"] == "/test/boom/{n}"
    assert sample["request_id"] == second.headers["x-request-id"]
    assert "RuntimeError" in sample["traceback"]
    assert "fd_thisisnot" not in str(group) and "fd_abcdefgh" not in str(group)


async def test_a_stuck_database_does_not_hold_the_500(
    raw_client: httpx.AsyncClient, services: Services, backend: str
) -> None:
    # The writer is busy (SQLite: its one connection is taken; PostgreSQL: the table is locked),
    # so recording the group cannot finish: the response still comes, within the bound.
    async with services.db.session_scope() as session:
        await session.execute(text("SELECT 1"))  # takes the writer (BEGIN IMMEDIATE on SQLite)
        if backend == "postgres":
            await session.execute(text("LOCK TABLE error_groups IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        response = await raw_client.get("/test/boom/1")
        elapsed = time.monotonic() - started
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert 1.5 < elapsed < 5
    async with services.db.read_scope() as session:
        assert (await session.execute(select(ErrorGroup))).first() is None


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"source": "browser"}, 422, "invalid_request"),
        ({"since": "yesterday"}, 422, "invalid_request"),
        ({"since": "2026-01-01T00:00:00"}, 422, "invalid_request"),
        ({"cursor": "not-a-cursor"}, 422, "invalid_request"),
        ({"cursor": "MjAyNi0wMS0wMVQwMDowMDowMA=="}, 422, "invalid_request"),
        ({"limit": "0"}, 422, "invalid_request"),
        ({"limit": "201"}, 422, "invalid_request"),
        ({"site_id": "s" * 41}, 422, "invalid_request"),
    ],
)
async def test_bad_input_gets_error_codes(
    client: httpx.AsyncClient,
    services: Services,
    params: dict[str, str],
    status: int,
    code: str,
) -> None:
    reader = await key(services, "read")
    response = await client.get(f"{API}/errors", headers=reader, params=params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_access_needs_the_read_permission(
    client: httpx.AsyncClient, services: Services
) -> None:
    anonymous = await client.get(f"{API}/errors")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    events_only = await key(services, "events")
    refused = await client.get(f"{API}/errors", headers=events_only)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    reader = await key(services, "read")
    missing = await client.get(f"{API}/errors/err_nope", headers=reader)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    long = await client.get(f"{API}/errors/{'x' * 300}", headers=reader)
    assert long.status_code == 404

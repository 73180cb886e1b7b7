"""The REST API: API keys with scopes, operator sessions with CSRF, roles, the audit log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.actions.operators import do_create_operator
from frontdesk.models import OperatorSession, utcnow
from frontdesk.services import Services
from tests.conftest import PUBLIC_URL, SiteInfo, make_site

API = "/api/v1"
PASSWORD = "correct horse battery staple"


async def api_key(
    services: Services, scopes: list[str], site_id: str | None = None
) -> dict[str, str]:
    async with services.db.session_scope() as session:
        created = await do_create_api_key(session, scopes=scopes, site_id=site_id)
    return {"Authorization": f"Bearer {created.key}"}


async def operator(services: Services, email: str, role: str) -> None:
    async with services.db.session_scope() as session:
        await do_create_operator(session, email=email, password=PASSWORD, role=role)


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A dashboard-like client: HTTPS (so Secure cookies flow) from the app's own origin."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="https://testserver",
        headers={"Origin": PUBLIC_URL},
    ) as http:
        yield http


async def sign_in(browser: httpx.AsyncClient, email: str) -> str:
    response = await browser.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


async def test_requires_credentials(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer fd_nope"}, {"Authorization": "Bearer eyJ.x.y"}):
        response = await client.get(f"{API}/sites", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


async def test_scopes_are_enforced(client: httpx.AsyncClient, services: Services) -> None:
    reader = await api_key(services, ["read"])
    assert (await client.get(f"{API}/sites", headers=reader)).status_code == 200
    denied = await client.post(
        f"{API}/sites", headers=reader, json={"name": "x", "allowed_origins": []}
    )
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    events_only = await api_key(services, ["events"])
    assert (await client.get(f"{API}/sites", headers=events_only)).status_code == 403


async def test_site_lifecycle_with_admin_key(client: httpx.AsyncClient, services: Services) -> None:
    admin = await api_key(services, ["admin"])
    created = await client.post(
        f"{API}/sites",
        headers=admin,
        json={
            "name": "Shop",
            "allowed_origins": ["https://Shop.example:443"],
            "responder": {
                "kind": "openai",
                "base_url": "https://api.example",
                "api_key": "sk-1",
                "model": "m",
            },
        },
    )
    assert created.status_code == 201, created.text
    site = created.json()
    assert site["secret"].startswith("fds_")
    assert site["allowed_origins"] == ["https://shop.example"]
    assert site["responder"]["api_key"] == "********"  # provider keys never come back
    site_id = site["id"]

    read = (await client.get(f"{API}/sites/{site_id}", headers=admin)).json()
    assert "secret" not in read
    changed = await client.patch(
        f"{API}/sites/{site_id}",
        headers=admin,
        json={"greeting": "Hello!", "options": {"require_identity": True}},
    )
    assert changed.status_code == 200
    assert changed.json()["greeting"] == "Hello!"
    assert changed.json()["options"]["require_identity"] is True
    rotated = await client.post(f"{API}/sites/{site_id}/secret", headers=admin)
    assert rotated.json()["secret"] != site["secret"]
    assert (await client.delete(f"{API}/sites/{site_id}", headers=admin)).status_code == 204
    gone = await client.get(f"{API}/sites/{site_id}", headers=admin)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "site_not_found"

    audit = (await client.get(f"{API}/audit", headers=admin)).json()["entries"]
    actions = [e["action"] for e in audit]
    assert actions[:4] == ["site.deleted", "site.secret_rotated", "site.updated", "site.created"]
    assert all(e["actor_kind"] == "api_key" for e in audit[:4])


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "allowed_origins": ["not an origin"]},
        {"name": "", "allowed_origins": []},
        {"name": "x", "allowed_origins": [], "unknown": 1},
        {"name": "x", "allowed_origins": [], "responder": {"kind": "oracle"}},
        {"name": "x", "allowed_origins": [], "options": {"teleport": True}},
        {"name": "x", "allowed_origins": "https://a.example"},
    ],
)
async def test_site_validation(
    client: httpx.AsyncClient, services: Services, body: dict[str, object]
) -> None:
    admin = await api_key(services, ["admin"])
    response = await client.post(f"{API}/sites", headers=admin, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


async def test_site_limited_key(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    other = await make_site(services, name="Other")
    key = await api_key(services, ["admin"], site_id=site.id)
    listed = (await client.get(f"{API}/sites", headers=key)).json()["sites"]
    assert [s["id"] for s in listed] == [site.id]
    assert (await client.get(f"{API}/sites/{other.id}", headers=key)).status_code == 404
    assert (
        await client.patch(f"{API}/sites/{other.id}", headers=key, json={"greeting": "x"})
    ).status_code == 404


async def test_api_keys_are_shown_once_and_revocable(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await api_key(services, ["admin"])
    created = (
        await client.post(f"{API}/api-keys", headers=admin, json={"scopes": ["read"], "name": "ci"})
    ).json()
    new_key = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get(f"{API}/sites", headers=new_key)).status_code == 200
    listed = (await client.get(f"{API}/api-keys", headers=admin)).json()["api_keys"]
    entry = next(k for k in listed if k["id"] == created["id"])
    assert "key" not in entry and entry["last_used_at"] is not None
    assert (
        await client.delete(f"{API}/api-keys/{created['id']}", headers=admin)
    ).status_code == 204
    assert (await client.get(f"{API}/sites", headers=new_key)).status_code == 401
    bad = await client.post(f"{API}/api-keys", headers=admin, json={"scopes": ["root"]})
    assert bad.status_code == 422


async def test_operator_session_cookie_and_csrf(
    browser: httpx.AsyncClient, services: Services
) -> None:
    await operator(services, "owner@shop.example", "owner")
    wrong = await browser.post(
        f"{API}/auth/login", json={"email": "owner@shop.example", "password": "nope"}
    )
    assert wrong.status_code == 401
    unknown = await browser.post(
        f"{API}/auth/login", json={"email": "who@shop.example", "password": "nope"}
    )
    assert unknown.json() == wrong.json()

    response = await browser.post(
        f"{API}/auth/login", json={"email": "OWNER@shop.example", "password": PASSWORD}
    )
    assert response.status_code == 200
    cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith("__Host-fd_session="))
    for attribute in ("Secure", "HttpOnly", "SameSite=lax", "Path=/"):
        assert attribute.lower() in session_cookie.lower()
    assert "domain" not in session_cookie.lower()
    csrf = response.json()["csrf_token"]

    assert (await browser.get(f"{API}/auth/me")).json()["email"] == "owner@shop.example"
    body = {"name": "Shop", "allowed_origins": ["https://shop.example"]}
    no_token = await browser.post(f"{API}/sites", json=body)
    assert no_token.status_code == 403
    cross_site = await browser.post(
        f"{API}/sites", json=body, headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    foreign = await browser.post(
        f"{API}/sites", json=body, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    forged = await browser.post(f"{API}/sites", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert forged.status_code == 403
    ok = await browser.post(f"{API}/sites", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201, ok.text

    audit = (await browser.get(f"{API}/audit")).json()["entries"]
    assert audit[0]["action"] == "site.created" and audit[0]["actor_kind"] == "operator"

    old_cookie = browser.cookies.get("__Host-fd_session")
    await sign_in(browser, "owner@shop.example")  # a new login rotates the session id
    assert browser.cookies.get("__Host-fd_session") != old_cookie
    async with httpx.AsyncClient(
        transport=browser._transport,
        base_url="https://testserver",
        cookies={"__Host-fd_session": old_cookie or ""},
    ) as stale_browser:
        assert (await stale_browser.get(f"{API}/auth/me")).status_code == 401

    csrf = browser.cookies.get("__Host-fd_csrf") or ""
    assert (
        await browser.post(f"{API}/auth/logout", headers={"X-CSRF-Token": csrf})
    ).status_code == 204
    assert (await browser.get(f"{API}/auth/me")).status_code == 401


async def test_idle_session_expires(browser: httpx.AsyncClient, services: Services) -> None:
    await operator(services, "op@shop.example", "operator")
    await sign_in(browser, "op@shop.example")
    assert (await browser.get(f"{API}/auth/me")).status_code == 200
    async with services.db.session_scope() as session:
        await session.execute(
            update(OperatorSession).values(last_seen_at=utcnow() - timedelta(minutes=31))
        )
    assert (await browser.get(f"{API}/auth/me")).status_code == 401


@pytest.mark.parametrize(
    ("role", "can_read", "can_admin", "can_own"),
    [
        ("viewer", True, False, False),
        ("operator", True, False, False),
        ("admin", True, True, False),
        ("owner", True, True, True),
    ],
)
async def test_roles(
    browser: httpx.AsyncClient,
    services: Services,
    role: str,
    can_read: bool,
    can_admin: bool,
    can_own: bool,
) -> None:
    await operator(services, f"{role}@shop.example", role)
    csrf = await sign_in(browser, f"{role}@shop.example")
    headers = {"X-CSRF-Token": csrf}
    read = await browser.get(f"{API}/sites")
    assert (read.status_code == 200) is can_read
    create = await browser.post(
        f"{API}/sites", headers=headers, json={"name": "S", "allowed_origins": []}
    )
    assert (create.status_code == 201) is can_admin
    new_operator = await browser.post(
        f"{API}/operators",
        headers=headers,
        json={"email": f"new-{role}@shop.example", "password": PASSWORD, "role": "viewer"},
    )
    assert (new_operator.status_code == 201) is can_own
    if not can_own:
        assert new_operator.json()["error"]["code"] == "forbidden"


async def test_knowledge_through_the_api(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    admin = await api_key(services, ["admin"])
    added = await client.post(
        f"{API}/knowledge",
        headers=admin,
        json={
            "site_id": site.id,
            "title": "Opening hours",
            "text": "# Opening hours\n\nThe shop is open from nine to five on weekdays.",
        },
    )
    assert added.status_code == 202, added.text
    assert added.json()["status"] == "queued"
    location = added.headers["Location"].removeprefix(PUBLIC_URL)
    for _ in range(200):  # indexed by the worker, woken by the upload's commit
        ingestion = (await client.get(location, headers=admin)).json()
        if ingestion["status"] != "queued" and ingestion["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert ingestion["status"] == "done", ingestion
    listed = (
        await client.get(f"{API}/knowledge", params={"site_id": site.id}, headers=admin)
    ).json()
    assert [d["title"] for d in listed["documents"]] == ["Opening hours"]
    document_id = ingestion["document_id"]
    assert [d["id"] for d in listed["documents"]] == [document_id]
    assert (await client.delete(f"{API}/knowledge/{document_id}", headers=admin)).status_code == 204
    assert (await client.delete(f"{API}/knowledge/{document_id}", headers=admin)).status_code == 404
    missing_site = await client.post(
        f"{API}/knowledge", headers=admin, json={"site_id": "site_nope", "title": "t", "text": "x"}
    )
    assert missing_site.json()["error"]["code"] == "site_not_found"

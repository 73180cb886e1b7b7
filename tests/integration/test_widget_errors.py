"""Bad input and forbidden access get the contract's error codes, never a 500."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from frontdesk.security.identity import sign_identity
from frontdesk.services import Services
from tests.conftest import SiteInfo, Visitor, make_site, start_visitor

BASE = "/api/widget/v1"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_unknown_site(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{BASE}/sessions", json={"site_id": "site_nope"})
    assert_error(response, 404, "site_not_found")


async def test_disallowed_and_missing_origin(client: httpx.AsyncClient, site: SiteInfo) -> None:
    evil = await client.post(
        f"{BASE}/sessions", json={"site_id": site.id}, headers={"Origin": "https://evil.example"}
    )
    assert_error(evil, 403, "origin_not_allowed")
    del client.headers["Origin"]
    missing = await client.post(f"{BASE}/sessions", json={"site_id": site.id})
    assert_error(missing, 403, "origin_not_allowed")


async def test_every_widget_call_rechecks_origin(
    client: httpx.AsyncClient, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    evil = {**visitor.auth, "Origin": "https://evil.example"}
    calls = [
        client.post(f"{BASE}/conversations", headers=evil),
        client.get(f"{BASE}/conversations", headers=evil),
        client.get(f"{BASE}/conversations/{conversation_id}/messages", headers=evil),
        client.post(
            f"{BASE}/conversations/{conversation_id}/messages",
            headers=evil,
            json={"client_id": "x", "text": "hi"},
        ),
        client.post(f"{BASE}/events", headers=evil, json={"events": [{"type": "widget.opened"}]}),
    ]
    for call in calls:
        assert_error(await call, 403, "origin_not_allowed")


async def test_wildcard_origin(client: httpx.AsyncClient, services: Services) -> None:
    site = await make_site(services, origins=["https://*.shop.example"])
    ok = await client.post(
        f"{BASE}/sessions", json={"site_id": site.id}, headers={"Origin": "https://eu.shop.example"}
    )
    assert ok.status_code == 201
    bare = await client.post(
        f"{BASE}/sessions", json={"site_id": site.id}, headers={"Origin": "https://shop.example"}
    )
    assert_error(bare, 403, "origin_not_allowed")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"site_id": 5}',
        b'{"site_id": null}',
        b"{}",
        b'{"site_id": "' + b"x" * 100 + b'"}',
    ],
)
async def test_malformed_session_bodies(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post(
        f"{BASE}/sessions", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"client_id": "a", "text": ""}, "invalid_request"),
        ({"client_id": "a", "text": "   \n\t "}, "invalid_request"),
        ({"client_id": "a", "text": "\x00\x01\x02"}, "invalid_request"),
        ({"client_id": "a", "text": "x" * 4001}, "invalid_request"),
        ({"client_id": "a", "text": 42}, "invalid_request"),
        ({"client_id": 7, "text": "hi"}, "invalid_request"),
        ({"client_id": "has space", "text": "hi"}, "invalid_request"),
        ({"client_id": "", "text": "hi"}, "invalid_request"),
        ({"text": "hi"}, "invalid_request"),
    ],
)
async def test_bad_messages(
    client: httpx.AsyncClient, visitor: Visitor, payload: dict[str, object], code: str
) -> None:
    conversation_id = await visitor.conversation()
    response = await client.post(
        f"{BASE}/conversations/{conversation_id}/messages", headers=visitor.auth, json=payload
    )
    assert_error(response, 422, code)
    history = await client.get(
        f"{BASE}/conversations/{conversation_id}/messages", headers=visitor.auth
    )
    assert history.json()["messages"] == []


async def test_control_characters_are_stripped(client: httpx.AsyncClient, visitor: Visitor) -> None:
    conversation_id = await visitor.conversation()
    response = await visitor.send(conversation_id, "he\x00llo\u200b\r\nthere\x7f")
    assert response.status_code == 202
    assert response.json()["message"]["text"] == "hello\u200b\nthere"


async def test_body_too_large(client: httpx.AsyncClient, visitor: Visitor) -> None:
    conversation_id = await visitor.conversation()
    response = await client.post(
        f"{BASE}/conversations/{conversation_id}/messages",
        headers={**visitor.auth, "Content-Type": "application/json"},
        content=b'{"client_id": "a", "text": "' + b"x" * 70_000 + b'"}',
    )
    assert_error(response, 413, "payload_too_large")


async def test_bad_query_parameters(client: httpx.AsyncClient, visitor: Visitor) -> None:
    conversation_id = await visitor.conversation()
    url = f"{BASE}/conversations/{conversation_id}/messages"
    for params in (
        {"after_seq": -1},
        {"after_seq": "x"},
        {"limit": 0},
        {"limit": 10_000},
        {"after_seq": 10**30},
    ):
        response = await client.get(url, params=params, headers=visitor.auth)
        assert_error(response, 422, "invalid_request")


async def test_other_visitors_conversation_is_not_found(
    client: httpx.AsyncClient, site: SiteInfo, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    await visitor.send(conversation_id, "private")
    stranger = await start_visitor(client, site.id)
    url = f"{BASE}/conversations/{conversation_id}/messages"
    read = await client.get(url, headers=stranger.auth)
    assert_error(read, 404, "not_found")
    write = await client.post(url, headers=stranger.auth, json={"client_id": "x", "text": "hi"})
    assert_error(write, 404, "not_found")
    unknown = await client.get(f"{BASE}/conversations/conv_nope/messages", headers=visitor.auth)
    assert unknown.json() == read.json()  # indistinguishable from a missing one


async def test_other_sites_token_cannot_reach_conversation(
    client: httpx.AsyncClient, services: Services, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    other_site = await make_site(services, name="Other")
    outsider = await start_visitor(client, other_site.id)
    response = await client.get(
        f"{BASE}/conversations/{conversation_id}/messages", headers=outsider.auth
    )
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic abc", "Bearer not-a-jwt", "Bearer a.b.c"],
)
async def test_bad_authorization(client: httpx.AsyncClient, header: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = await client.post(f"{BASE}/conversations", headers=headers)
    assert_error(response, 401, "unauthorized")


async def test_forged_tokens(client: httpx.AsyncClient, site: SiteInfo, visitor: Visitor) -> None:
    now = int(time.time())
    claims = {"iss": "frontdesk", "aud": site.id, "sub": visitor.id, "iat": now, "exp": now + 60}
    header = {"typ": "fd-visitor+jwt"}
    forged = [
        jwt.encode(claims, "wrong-key-wrong-key-wrong-key-123", algorithm="HS256", headers=header),
        jwt.encode(claims, None, algorithm="none", headers=header),
        visitor.access_token[:-4]
        + ("AAAA" if not visitor.access_token.endswith("AAAA") else "BBBB"),
    ]
    for token in forged:
        response = await client.post(
            f"{BASE}/conversations", headers={"Authorization": f"Bearer {token}"}
        )
        assert_error(response, 401, "unauthorized")


async def test_expired_token(client: httpx.AsyncClient, services: Services, site: SiteInfo) -> None:
    tokens = services.tokens
    original = tokens.ttl_s
    tokens.ttl_s = -10
    try:
        token = tokens.issue(site_id=site.id, visitor_id="vis_x", verified=False)
    finally:
        tokens.ttl_s = original
    response = await client.post(
        f"{BASE}/conversations", headers={"Authorization": f"Bearer {token}"}
    )
    assert_error(response, 401, "token_expired")


async def test_refresh_rotates_and_reuse_revokes_family(
    client: httpx.AsyncClient, visitor: Visitor
) -> None:
    first = await client.post(
        f"{BASE}/sessions/refresh", json={"refresh_token": visitor.refresh_token}
    )
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["visitor_id"] == visitor.id
    assert rotated["refresh_token"] != visitor.refresh_token
    reused = await client.post(
        f"{BASE}/sessions/refresh", json={"refresh_token": visitor.refresh_token}
    )
    assert_error(reused, 401, "refresh_token_reused")
    # The thief's reuse revoked the family: the legitimately rotated token is dead too.
    after = await client.post(
        f"{BASE}/sessions/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert_error(after, 401, "refresh_token_reused")
    unknown = await client.post(f"{BASE}/sessions/refresh", json={"refresh_token": "fdr_nope"})
    assert_error(unknown, 401, "unauthorized")


async def test_identity_hmac_and_cross_device(client: httpx.AsyncClient, site: SiteInfo) -> None:
    expires = int(time.time()) + 300
    identity = {
        "user_id": "user-42",
        "expires": expires,
        "signature": sign_identity(site.secret, site.id, "user-42", expires),
    }
    laptop = await client.post(f"{BASE}/sessions", json={"site_id": site.id, "identity": identity})
    assert laptop.status_code == 201 and laptop.json()["verified"] is True
    auth = {"Authorization": f"Bearer {laptop.json()['access_token']}"}
    conversation_id = (await client.post(f"{BASE}/conversations", headers=auth)).json()["id"]
    phone = await client.post(f"{BASE}/sessions", json={"site_id": site.id, "identity": identity})
    assert phone.json()["visitor_id"] == laptop.json()["visitor_id"]
    phone_auth = {"Authorization": f"Bearer {phone.json()['access_token']}"}
    listed = (await client.get(f"{BASE}/conversations", headers=phone_auth)).json()
    assert [c["id"] for c in listed["conversations"]] == [conversation_id]
    # Knowing a verified visitor's id without a proof gives a new anonymous visitor.
    anonymous = await client.post(
        f"{BASE}/sessions", json={"site_id": site.id, "visitor_id": laptop.json()["visitor_id"]}
    )
    assert anonymous.json()["visitor_id"] != laptop.json()["visitor_id"]


async def test_identity_jwt(client: httpx.AsyncClient, site: SiteInfo) -> None:
    token = jwt.encode(
        {"sub": "user-7", "exp": int(time.time()) + 60, "aud": site.id}, site.secret, "HS256"
    )
    response = await client.post(
        f"{BASE}/sessions", json={"site_id": site.id, "identity": {"token": token}}
    )
    assert response.status_code == 201 and response.json()["verified"] is True


async def test_identity_failures(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    other = await make_site(services, name="Other")
    now = int(time.time())
    bad = [
        {"user_id": "u", "expires": now + 60, "signature": "00" * 32},
        {
            "user_id": "u",
            "expires": now - 1,
            "signature": sign_identity(site.secret, site.id, "u", now - 1),
        },
        {
            "user_id": "u",
            "expires": now + 60,
            "signature": sign_identity(other.secret, site.id, "u", now + 60),
        },
        {"user_id": "u", "expires": "soon", "signature": "x"},
        {"token": jwt.encode({"sub": "u", "exp": now + 60, "aud": site.id}, other.secret, "HS256")},
        {"token": jwt.encode({"sub": "u", "exp": now - 60, "aud": site.id}, site.secret, "HS256")},
        {"token": jwt.encode({"sub": "u", "exp": now + 60, "aud": other.id}, site.secret, "HS256")},
        {"token": 12},
    ]
    for identity in bad:
        response = await client.post(
            f"{BASE}/sessions", json={"site_id": site.id, "identity": identity}
        )
        assert_error(response, 401, "identity_invalid")


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/widget/v1/nothing"), 404, "not_found")
    response = await client.delete(f"{BASE}/sessions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"

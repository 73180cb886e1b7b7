"""Quick actions, click-to-unlock offers and leads through the widget API."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import select

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.models import EventRecord, Lead
from frontdesk.security.identity import sign_identity
from frontdesk.services import Services
from tests.conftest import SiteInfo, Visitor, start_visitor

OFFER = {
    "id": "price-list",
    "title": "Get the price list",
    "teaser": "Wholesale prices for 2027",
    "fields": ["email", "name"],
    "content": "Prices: **10 EUR** per unit.",
}
ACTIONS = [
    {"id": "hours", "label": "Opening hours", "kind": "message", "value": "When are you open?"},
    {"id": "docs", "label": "Docs", "kind": "url", "value": "https://shop.example/docs"},
]


async def configure(client: httpx.AsyncClient, services: Services, site_id: str) -> None:
    async with services.db.session_scope() as session:
        key = (await do_create_api_key(session, scopes=["admin"])).key
    response = await client.patch(
        f"/api/v1/sites/{site_id}",
        headers={"Authorization": f"Bearer {key}"},
        json={"quick_actions": ACTIONS, "offers": [OFFER], "appearance": {"color": "#2952cc"}},
    )
    assert response.status_code == 200, response.text


async def test_public_config_is_cached_and_hides_offer_content(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    await configure(client, services, site.id)
    response = await client.get(f"/api/widget/v1/sites/{site.id}/config")
    assert response.status_code == 200
    config = response.json()
    assert config["quick_actions"] == ACTIONS and config["appearance"] == {"color": "#2952cc"}
    assert config["offers"] == [
        {k: OFFER[k] for k in ("id", "title", "teaser", "fields")} | {"unlocked": False}
    ]
    assert "Prices" not in response.text
    again = await client.get(
        f"/api/widget/v1/sites/{site.id}/config",
        headers={"If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304
    refused = await client.get(
        f"/api/widget/v1/sites/{site.id}/config", headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
    missing = await client.get("/api/widget/v1/sites/site_nope/config")
    assert missing.json()["error"]["code"] == "site_not_found"


async def test_unlock_offer_records_lead_and_events(
    client: httpx.AsyncClient, services: Services, site: SiteInfo, visitor: Visitor
) -> None:
    await configure(client, services, site.id)
    listed = (await client.get("/api/widget/v1/offers", headers=visitor.auth)).json()["offers"]
    assert listed[0]["unlocked"] is False and "content" not in listed[0]
    url = "/api/widget/v1/offers/price-list/unlock"
    incomplete = await client.post(url, headers=visitor.auth, json={"email": "a@shop.example"})
    assert incomplete.status_code == 422 and "name" in incomplete.json()["error"]["message"]
    bad_email = await client.post(url, headers=visitor.auth, json={"email": "nope", "name": "Ann"})
    assert bad_email.status_code == 422
    unknown = await client.post(
        "/api/widget/v1/offers/other/unlock", headers=visitor.auth, json={"email": "a@b.example"}
    )
    assert unknown.status_code == 404
    conversation_id = await visitor.conversation()
    unlocked = await client.post(
        url,
        headers=visitor.auth,
        json={
            "email": "Ann@Shop.example",
            "name": " Ann  Lee ",
            "conversation_id": conversation_id,
            "referrer": "https://shop.example/pricing",
            "utm": {"utm_source": "newsletter", "other": "dropped"},
        },
    )
    assert unlocked.status_code == 201, unlocked.text
    assert unlocked.json()["offer"]["content"] == OFFER["content"]
    listed = (await client.get("/api/widget/v1/offers", headers=visitor.auth)).json()["offers"]
    assert listed[0]["unlocked"] is True and listed[0]["content"] == OFFER["content"]
    async with services.db.read_scope() as session:
        lead = (await session.execute(select(Lead))).scalar_one()
        events = (
            (await session.execute(select(EventRecord).order_by(EventRecord.offset)))
            .scalars()
            .all()
        )
    assert (lead.email, lead.name, lead.utm) == (
        "ann@shop.example",
        "Ann Lee",
        {"utm_source": "newsletter"},
    )
    captured = next(e for e in events if e.type == "lead.captured")
    assert captured.data["offer"] == {"id": "price-list", "title": "Get the price list"}
    assert captured.data["conversation_ref"] == conversation_id
    assert any(e.type == "offer.unlocked" for e in events)


async def test_verified_visitor_keeps_the_unlock_on_another_device(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    await configure(client, services, site.id)
    expires = int(time.time()) + 300
    identity = {
        "user_id": "u-1",
        "expires": expires,
        "signature": sign_identity(site.secret, site.id, "u-1", expires),
    }
    laptop = await start_visitor(client, site.id, identity=identity)
    await client.post(
        "/api/widget/v1/offers/price-list/unlock",
        headers=laptop.auth,
        json={"email": "u@shop.example", "name": "U"},
    )
    phone = await start_visitor(client, site.id, identity=identity)
    offers = (await client.get("/api/widget/v1/offers", headers=phone.auth)).json()["offers"]
    assert offers[0]["unlocked"] is True
    stranger = await start_visitor(client, site.id)
    offers = (await client.get("/api/widget/v1/offers", headers=stranger.auth)).json()["offers"]
    assert offers[0]["unlocked"] is False


async def test_leave_contact_after_graceful_reply(
    client: httpx.AsyncClient, visitor: Visitor
) -> None:
    response = await client.post(
        "/api/widget/v1/leads", headers=visitor.auth, json={"email": "me@shop.example"}
    )
    assert response.status_code == 201 and response.json()["lead_id"].startswith("lead_")
    empty = await client.post("/api/widget/v1/leads", headers=visitor.auth, json={})
    assert empty.status_code == 422


async def test_invalid_widget_configuration(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    async with services.db.session_scope() as session:
        key = (await do_create_api_key(session, scopes=["admin"])).key
    headers = {"Authorization": f"Bearer {key}"}
    bad = [
        {
            "quick_actions": [
                {"id": "x", "label": "X", "kind": "url", "value": "javascript:alert(1)"}
            ]
        },
        {"quick_actions": [{"id": "Bad Id", "label": "X", "kind": "message", "value": "hi"}]},
        {"offers": [{**OFFER, "fields": ["ssn"]}]},
        {"offers": [OFFER, OFFER]},
        {"offers": [{**OFFER, "content": ""}]},
    ]
    for body in bad:
        response = await client.patch(f"/api/v1/sites/{site.id}", headers=headers, json=body)
        assert response.status_code == 422, (body, response.text)

"""The JSON Schemas published in docs/schemas/ describe what webhooks really send: a real flow
(a conversation, messages, a lead from an offer, an operator closing it) produces events whose
webhook bodies validate against the envelope schema and their type's data schema."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import orjson
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from sqlalchemy import select

from frontdesk.models import EventRecord
from frontdesk.services import Services
from frontdesk.webhooks.fanout import payload_for
from tests.conftest import PUBLIC_URL, SiteInfo, start_visitor
from tests.integration.test_admin_api import api_key
from tests.integration.test_offers import ACTIONS, OFFER

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
CRM_TYPES = ("lead.captured", "conversation.started", "message.created", "conversation.closed")


def validators() -> dict[str, Draft202012Validator]:
    documents = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    registry: Registry[Any] = Registry().with_resources(
        (name, Resource.from_contents(doc)) for name, doc in documents.items()
    )
    found = {}
    for name, document in documents.items():
        Draft202012Validator.check_schema(document)
        found[name.removesuffix(".json")] = Draft202012Validator(
            document, registry=registry, format_checker=FormatChecker()
        )
    return found


async def test_crm_payloads_match_the_published_schemas(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    schemas = validators()
    assert set(CRM_TYPES) <= set(schemas) and "event" in schemas
    admin = await api_key(services, ["admin"])
    configured = await client.patch(
        f"/api/v1/sites/{site.id}",
        headers=admin,
        json={"quick_actions": ACTIONS, "offers": [OFFER], "appearance": {}},
    )
    assert configured.status_code == 200, configured.text

    visitor = await start_visitor(client, site.id)
    conversation = await visitor.conversation()
    assert (await visitor.send(conversation, "How do I install it?")).status_code == 202
    unlocked = await client.post(
        "/api/widget/v1/offers/price-list/unlock",
        headers=visitor.auth,
        json={
            "email": "ann@shop.example",
            "name": "Ann Lee",
            "conversation_id": conversation,
            "referrer": "https://shop.example/pricing",
            "utm": {"utm_source": "newsletter"},
        },
    )
    assert unlocked.status_code == 201, unlocked.text
    for _ in range(200):  # the bot's answer is stored before closing, so it is in the transcript
        async with services.db.read_scope() as session:
            answers = await session.scalar(
                select(EventRecord.offset).where(EventRecord.type == "message.created").offset(1)
            )
        if answers:
            break
        await asyncio.sleep(0.02)
    closed = await client.post(f"/api/v1/conversations/{conversation}/close", headers=admin)
    assert closed.status_code == 200, closed.text

    async with services.db.read_scope() as session:
        events = (await session.execute(select(EventRecord))).scalars().all()
    seen: dict[str, int] = {}
    for event in events:
        body = orjson.loads(payload_for(event, PUBLIC_URL))
        errors = [e.message for e in schemas["event"].iter_errors(body)]
        assert not errors, (event.type, errors)
        if event.type in CRM_TYPES:
            errors = [e.message for e in schemas[event.type].iter_errors(body["data"])]
            assert not errors, (event.type, body["data"], errors)
            seen[event.type] = seen.get(event.type, 0) + 1
    assert set(seen) == set(CRM_TYPES) and seen["message.created"] >= 2
    lead = next(e for e in events if e.type == "lead.captured").data
    assert lead["conversation_url"] == f"{PUBLIC_URL}/dashboard/inbox/{conversation}"
    assert lead["offer"] == {"id": "price-list", "title": "Get the price list"}
    transcript = next(e for e in events if e.type == "conversation.closed").data["transcript"]
    assert [m["role"] for m in transcript][:2] == ["visitor", "assistant"]

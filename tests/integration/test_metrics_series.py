"""`GET /api/v1/metrics/series` against the database: every bucket equals a count computed here
from the stored rows, bucket edges fall where they should (a row at 59.999999 s is in the first
minute, one at 60 s in the second, one at `until` in none), and the buckets add up to the summary
for the same window. Also the summary's per-item click figures, and bad parameters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.actions.knowledge import do_add_document
from frontdesk.knowledge.ingest import parse_document
from frontdesk.models import Conversation, EventRecord, Lead, Message, Visitor, utcnow
from frontdesk.services import Services
from tests.conftest import SiteInfo, make_site, start_visitor

API = "/api/v1"
# Offsets (seconds after `since`) the stored rows are moved to; -1 and 600 are outside the window.
OFFSETS = [-1, 0, 0.5, 59.999999, 60, 61.5, 119, 120, 299.25, 599.999, 600]


async def key(services: Services, *scopes: str, site_id: str | None = None) -> dict[str, str]:
    async with services.db.session_scope() as session:
        created = await do_create_api_key(session, scopes=list(scopes), site_id=site_id)
    return {"Authorization": f"Bearer {created.key}"}


async def _workload(client: httpx.AsyncClient, services: Services, site: SiteInfo) -> None:
    for i in range(4):
        visitor = await start_visitor(client, site.id)
        conversation_id = await visitor.conversation()
        for j in range(i + 1):
            await visitor.send(conversation_id, f"question {i}.{j}")
        events = [{"type": "widget.opened", "data": {}}, {"type": "error.reported", "data": {}}]
        await client.post("/api/widget/v1/events", headers=visitor.auth, json={"events": events})
        if i % 2:
            await client.post(
                "/api/widget/v1/leads", headers=visitor.auth, json={"email": f"l{i}@shop.example"}
            )
    await services.turns.drain()


async def _spread(services: Services, since: datetime) -> None:
    """Move every stored row to one of OFFSETS (round robin), microseconds included."""
    async with services.db.session_scope() as session:
        for model, column in (
            (Conversation, Conversation.created_at),
            (Message, Message.created_at),
            (Visitor, Visitor.created_at),
            (Lead, Lead.created_at),
            (EventRecord, EventRecord.at),
        ):
            key_column = EventRecord.offset if model is EventRecord else model.id  # type: ignore[attr-defined]
            ids = list((await session.execute(select(key_column).order_by(key_column))).scalars())
            for n, row_id in enumerate(ids):
                at = since + timedelta(seconds=OFFSETS[n % len(OFFSETS)])
                await session.execute(
                    update(model).where(key_column == row_id).values({column.key: at})
                )


def _expected(times: list[datetime], since: datetime, until: datetime, size: int) -> list[int]:
    buckets = [0] * -(-int((until - since).total_seconds()) // size)
    for at in times:
        if since <= at < until:
            buckets[(at - since) // timedelta(seconds=size)] += 1
    return buckets


async def test_series_buckets_equal_the_database(
    client: httpx.AsyncClient, services: Services
) -> None:
    site = await make_site(services, limits={"visitor_messages": "600/minute", "visitor_burst": 50})
    other = await make_site(services, name="Other")
    await _workload(client, services, site)
    await _workload(client, services, other)
    since = utcnow().replace(microsecond=0) - timedelta(hours=2)
    until = since + timedelta(seconds=600)
    await _spread(services, since)
    reader = await key(services, "read")

    for site_id in (None, site.id):
        for size in (60, 7, 600):
            params: dict[str, Any] = {
                "since": since.isoformat(),
                "until": until.isoformat(),
                "bucket_s": size,
            } | ({"site_id": site_id} if site_id else {})
            response = await client.get(f"{API}/metrics/series", headers=reader, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["bucket_s"] == size
            assert len(body["buckets"]) == -(-600 // size)
            assert body["buckets"][0] == since.isoformat()
            got = body["series"]
            async with services.db.read_scope() as session:
                stmt = select(Message.created_at, Message.role, Message.meta).join(
                    Conversation, Conversation.id == Message.conversation_id
                )
                conv = select(Conversation.created_at)
                visitors = select(Visitor.created_at)
                leads = select(Lead.created_at)
                events = select(EventRecord.at, EventRecord.type)
                if site_id:
                    stmt = stmt.where(Conversation.site_id == site_id)
                    conv = conv.where(Conversation.site_id == site_id)
                    visitors = visitors.where(Visitor.site_id == site_id)
                    leads = leads.where(Lead.site_id == site_id)
                    events = events.where(EventRecord.site_id == site_id)
                messages = (await session.execute(stmt)).all()
                stored_events = (await session.execute(events)).all()
                expect = {
                    "messages": [m[0] for m in messages],
                    "conversations": list((await session.execute(conv)).scalars()),
                    "visitors": list((await session.execute(visitors)).scalars()),
                    "leads": list((await session.execute(leads)).scalars()),
                    "errors": [at for at, t in stored_events if t == "error.reported"],
                    "widget_opens": [at for at, t in stored_events if t == "widget.opened"],
                    "answers": [
                        at
                        for at, role, meta in messages
                        if role == "assistant" and meta and "latency_ms" in meta
                    ],
                }
            for name, times in expect.items():
                assert got[name] == _expected(times, since, until, size), (name, site_id, size)
            assert sum(got["messages"]) > 0 and sum(got["answers"]) > 0
            for p50, p95, answers in zip(
                got["latency_p50_ms"], got["latency_p95_ms"], got["answers"], strict=True
            ):
                assert (p50 is None) == (answers == 0)
                if answers:
                    assert 0 <= p50 <= p95

            summary = (
                await client.get(
                    f"{API}/metrics",
                    headers=reader,
                    params={k: v for k, v in params.items() if k != "bucket_s"},
                )
            ).json()
            for name in ("conversations", "messages", "visitors", "leads", "errors", "answers"):
                assert sum(got[name]) == summary[name], (name, site_id)
            assert sum(got["widget_opens"]) == summary["widget_opens"]


async def test_series_bucket_edges(client: httpx.AsyncClient, services: Services) -> None:
    """One conversation per edge case, checked bucket by bucket (the database's own arithmetic
    against the rule `floor((created - since) / bucket_s)`)."""
    site = await make_site(services)
    since = utcnow().replace(microsecond=0) - timedelta(hours=3)
    placed = [59.999999, 60, 119.5, 180, -0.000001, 180 + 0.000001]
    ids = []
    for _ in placed:
        visitor = await start_visitor(client, site.id)
        ids.append(await visitor.conversation())
    async with services.db.session_scope() as session:
        for conversation_id, offset in zip(ids, placed, strict=True):
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(created_at=since + timedelta(seconds=offset))
            )
    reader = await key(services, "read")
    body = (
        await client.get(
            f"{API}/metrics/series",
            headers=reader,
            params={
                "since": since.isoformat(),
                "until": (since + timedelta(seconds=180)).isoformat(),
                "bucket_s": 60,
                "site_id": site.id,
            },
        )
    ).json()
    # 59.999999 → bucket 0; 60 and 119.5 → bucket 1; 180 (= until), 180.000001 and -0.000001 → none
    assert body["series"]["conversations"] == [1, 2, 0]


async def test_series_refuses_bad_parameters(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    reader = await key(services, "read")
    now = utcnow()
    cases: list[dict[str, Any]] = [
        {"bucket_s": 0},
        {"bucket_s": 86_401},
        {"bucket_s": "x"},
        {"since": now.isoformat(), "until": (now - timedelta(minutes=1)).isoformat()},
        {"since": (now - timedelta(days=2)).isoformat(), "bucket_s": 60},  # 2,880 buckets
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},  # no zone
    ]
    for params in cases:
        response = await client.get(f"{API}/metrics/series", headers=reader, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    limited = await key(services, "read", site_id=site.id)
    other = await make_site(services, name="Other")
    refused = await client.get(
        f"{API}/metrics/series", headers=limited, params={"site_id": other.id}
    )
    assert refused.status_code == 422
    default = await client.get(f"{API}/metrics/series", headers=limited)
    assert default.status_code == 200
    assert len(default.json()["buckets"]) == 60  # the last hour by minute
    assert (await client.get(f"{API}/metrics/series")).status_code == 401


async def test_summary_counts_clicks_per_quick_action_and_offer(
    client: httpx.AsyncClient, services: Services
) -> None:
    site = await make_site(services)
    offer = {"id": "guide", "title": "Guide", "fields": ["email"], "content": "Measure twice."}
    admin = await key(services, "admin")
    changed = await client.patch(f"{API}/sites/{site.id}", headers=admin, json={"offers": [offer]})
    assert changed.status_code == 200, changed.text
    before = (await client.get(f"{API}/metrics", headers=admin)).json()
    visitor = await start_visitor(client, site.id)
    events = [
        {"type": "quick_action.clicked", "data": {"action_id": "hours", "kind": "message"}},
        {"type": "quick_action.clicked", "data": {"action_id": "hours", "kind": "message"}},
        {"type": "quick_action.clicked", "data": {"action_id": "docs", "kind": "url"}},
        {"type": "quick_action.clicked", "data": {"action_id": {"not": "a string"}}},
        {"type": "offer.viewed", "data": {"offer_id": "guide"}},
        {"type": "offer.viewed", "data": {"offer_id": "guide"}},
        {"type": "offer.clicked", "data": {"offer_id": "guide"}},
    ]
    posted = await client.post(
        "/api/widget/v1/events", headers=visitor.auth, json={"events": events}
    )
    assert posted.status_code < 300, posted.text
    lead = await client.post(
        "/api/widget/v1/offers/guide/unlock", headers=visitor.auth, json={"email": "a@shop.example"}
    )
    assert lead.status_code < 300, lead.text
    figures = (await client.get(f"{API}/metrics", headers=admin)).json()
    assert figures["quick_actions"] == {"hours": 2, "docs": 1, "unknown": 1}
    assert figures["offers"] == {"guide": {"views": 2, "clicks": 1, "unlocks": 1}}
    assert figures["offer_views"] == 2
    assert figures["quick_action_clicks"] == 4 and figures["offer_clicks"] == 1
    assert figures["offer_unlocks"] == 1
    assert before["quick_actions"] == {} and before["offers"] == {}


async def test_summary_active_visitors_and_cached_answers(
    client: httpx.AsyncClient, services: Services
) -> None:
    site = await make_site(services, options={"answer_cache": True})
    document = parse_document(
        "# Opening hours\n\nThe office opens at nine in the morning.",
        content_type="text/markdown",
        source="hours.md",
        fallback_title="Hours",
    )
    async with services.db.session_scope() as session:
        await do_add_document(session, site_id=site.id, document=document)
    reader = await key(services, "read")
    writers = []
    for _ in range(3):
        visitor = await start_visitor(client, site.id)
        writers.append(visitor)
    await start_visitor(client, site.id)  # a visitor who never writes
    for visitor in writers[:2]:
        conversation_id = await visitor.conversation()
        for _ in range(2):  # the same question twice: the second answer can come from the cache
            await visitor.send(conversation_id, "When does the office open?")
            await services.turns.drain()
    figures = (await client.get(f"{API}/metrics", headers=reader)).json()
    assert figures["active_visitors"] == 2
    assert figures["visitors"] == 4
    async with services.db.read_scope() as session:
        metas = list(
            (await session.execute(select(Message.meta).where(Message.role == "assistant")))
            .scalars()
            .all()
        )
    cached = sum(1 for m in metas if m and m.get("cached") is True)
    assert figures["answers"] == len(metas) == 4
    assert figures["cached_answers"] == cached >= 1
    later = (utcnow() + timedelta(seconds=1)).isoformat()
    assert (await client.get(f"{API}/metrics", headers=reader, params={"since": later})).json()[
        "active_visitors"
    ] == 0

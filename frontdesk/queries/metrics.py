"""The figures of `/api/v1/metrics`, computed from the database, exactly.

Every count is one SQL aggregate over a time window (`since` ≤ created < `until`), optionally for
one site; latency percentiles come from the answers' stored `latency_ms` (nearest-rank).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.models import (
    Conversation,
    EventRecord,
    Lead,
    Message,
    Visitor,
    WebhookDelivery,
    WebhookEndpoint,
)


def _window(
    stmt: Select[Any], column: Any, since: datetime | None, until: datetime | None
) -> Select[Any]:
    if since is not None:
        stmt = stmt.where(column >= since)
    if until is not None:
        stmt = stmt.where(column < until)
    return stmt


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


async def summary(
    session: AsyncSession, *, site_id: str | None, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    async def count(stmt: Select[Any], column: Any) -> int:
        return int((await session.execute(_window(stmt, column, since, until))).scalar() or 0)

    def for_site(stmt: Select[Any], column: Any) -> Select[Any]:
        return stmt.where(column == site_id) if site_id else stmt

    conversations = await count(
        for_site(select(func.count()).select_from(Conversation), Conversation.site_id),
        Conversation.created_at,
    )
    messages_stmt = (
        select(func.count())
        .select_from(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
    )
    messages = await count(for_site(messages_stmt, Conversation.site_id), Message.created_at)
    visitors = await count(
        for_site(select(func.count()).select_from(Visitor), Visitor.site_id), Visitor.created_at
    )
    leads = await count(
        for_site(select(func.count()).select_from(Lead), Lead.site_id), Lead.created_at
    )

    async def events(type_: str) -> int:
        stmt = select(func.count()).select_from(EventRecord).where(EventRecord.type == type_)
        return await count(for_site(stmt, EventRecord.site_id), EventRecord.at)

    latency_stmt = (
        select(Message.meta)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.role == "assistant")
    )
    latency_stmt = _window(
        for_site(latency_stmt, Conversation.site_id), Message.created_at, since, until
    )
    latencies = [
        float(meta["latency_ms"])
        for (meta,) in (await session.execute(latency_stmt)).all()
        if meta and isinstance(meta.get("latency_ms"), int | float)
    ]
    deliveries: dict[str, int] = {"succeeded": 0, "failed": 0, "pending": 0}
    delivery_stmt: Any = (
        select(WebhookDelivery.status, func.count())
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .group_by(WebhookDelivery.status)
    )
    delivery_stmt = _window(
        for_site(delivery_stmt, WebhookEndpoint.site_id), WebhookDelivery.created_at, since, until
    )
    for row in (await session.execute(delivery_stmt)).all():
        status, number = str(row[0]), int(row[1])
        deliveries["failed" if status == "dead" else status] += number
    return {
        "conversations": conversations,
        "messages": messages,
        "visitors": visitors,
        "leads": leads,
        "errors": await events("error.reported"),
        "quick_action_clicks": await events("quick_action.clicked"),
        "offer_clicks": await events("offer.clicked"),
        "offer_unlocks": await events("offer.unlocked"),
        "widget_opens": await events("widget.opened"),
        "answers": len(latencies),
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        "webhook_deliveries": deliveries,
    }

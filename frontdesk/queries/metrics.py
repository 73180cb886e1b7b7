"""The figures of `/api/v1/metrics` and `/api/v1/metrics/series`, computed from the database,
exactly.

Every count is one SQL aggregate over a time window (`since` ≤ created < `until`), optionally for
one site; latency percentiles come from the answers' stored `latency_ms` (nearest-rank). A series
splits the window into equal buckets and counts each in SQL, grouped by the bucket number
`(whole seconds since the epoch − since) div bucket_s`; `since` is a whole second, so that number
equals the exact `floor((created − since) / bucket_s)` on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, Select, cast, func, select
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
    timed = [
        meta
        for (meta,) in (await session.execute(latency_stmt)).all()
        if meta and isinstance(meta.get("latency_ms"), int | float)
    ]
    latencies = [float(meta["latency_ms"]) for meta in timed]
    writers_stmt = for_site(
        select(func.count(func.distinct(Conversation.visitor_id)))
        .select_from(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.role == "visitor"),
        Conversation.site_id,
    )
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
    by_item = await _clicks_by_item(session, site_id=site_id, since=since, until=until)
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
        "offer_views": await events("offer.viewed"),
        "quick_actions": by_item["quick_actions"],
        "offers": by_item["offers"],
        "active_visitors": await count(writers_stmt, Message.created_at),
        "cached_answers": sum(1 for meta in timed if meta.get("cached") is True),
    }


OFFER_EVENTS = {"offer.viewed": "views", "offer.clicked": "clicks", "offer.unlocked": "unlocks"}


async def _clicks_by_item(
    session: AsyncSession, *, site_id: str | None, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    """Clicks per quick action, and views/clicks/unlocks per offer, by the ids the widget and the
    lead capture record (`data.data.action_id`, `data.data.offer_id`, `data.offer_id`)."""
    stmt = select(EventRecord.type, EventRecord.data).where(
        EventRecord.type.in_([*OFFER_EVENTS, "quick_action.clicked"])
    )
    if site_id:
        stmt = stmt.where(EventRecord.site_id == site_id)
    actions: dict[str, int] = {}
    offers: dict[str, dict[str, int]] = {}
    for type_, data in (await session.execute(_window(stmt, EventRecord.at, since, until))).all():
        reported = data.get("data") if isinstance(data.get("data"), dict) else {}
        if type_ == "quick_action.clicked":
            key = _item_id(reported.get("action_id"))
            actions[key] = actions.get(key, 0) + 1
            continue
        # Unlocks are recorded by the server with the offer id at the top level.
        source = data if type_ == "offer.unlocked" else reported
        key = _item_id(source.get("offer_id"))
        counts = offers.setdefault(key, {"views": 0, "clicks": 0, "unlocks": 0})
        counts[OFFER_EVENTS[type_]] += 1
    return {"quick_actions": actions, "offers": offers}


def _item_id(value: Any) -> str:
    # Widget reports are visitor input: anything but a short string counts as "unknown".
    return value if isinstance(value, str) and 0 < len(value) <= 40 else "unknown"


def _epoch_seconds(column: Any, dialect: str) -> Any:
    """Whole seconds since the Unix epoch of a stored UTC time (floored)."""
    if dialect == "sqlite":
        # Stored as naive UTC text `YYYY-MM-DD HH:MM:SS.ffffff`. The fraction is cut off as text:
        # SQLite's date functions round it to milliseconds (…59.999999 would become the next
        # second and land in the next bucket).
        return cast(func.strftime("%s", func.substr(column, 1, 19)), Integer)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


async def series(
    session: AsyncSession,
    *,
    site_id: str | None,
    since: datetime,
    until: datetime,
    bucket_s: int,
) -> dict[str, Any]:
    """Counts per bucket of `bucket_s` seconds over `[since, until)` (`since` must be a whole
    second), and answer latency p50/p95 per bucket (None where there was no answer)."""
    assert since.microsecond == 0, "since must be a whole second"
    size = timedelta(seconds=bucket_s)
    buckets = math.ceil((until - since) / size)
    origin = int(since.timestamp())
    dialect = session.get_bind().dialect.name

    async def counted(stmt: Select[Any], column: Any) -> list[int]:
        number = (_epoch_seconds(column, dialect) - origin) // bucket_s
        grouped = (
            _window(stmt.add_columns(number.label("bucket")), column, since, until)
            .group_by("bucket")
            .order_by("bucket")
        )
        values = [0] * buckets
        for total, bucket in (await session.execute(grouped)).all():
            values[int(bucket)] = int(total)
        return values

    def for_site(stmt: Select[Any], column: Any) -> Select[Any]:
        return stmt.where(column == site_id) if site_id else stmt

    def events(type_: str) -> Select[Any]:
        stmt = select(func.count()).select_from(EventRecord).where(EventRecord.type == type_)
        return for_site(stmt, EventRecord.site_id)

    in_site_messages = for_site(
        select(func.count())
        .select_from(Message)
        .join(Conversation, Conversation.id == Message.conversation_id),
        Conversation.site_id,
    )
    figures = {
        "conversations": await counted(
            for_site(select(func.count()).select_from(Conversation), Conversation.site_id),
            Conversation.created_at,
        ),
        "messages": await counted(in_site_messages, Message.created_at),
        "visitors": await counted(
            for_site(select(func.count()).select_from(Visitor), Visitor.site_id),
            Visitor.created_at,
        ),
        "leads": await counted(
            for_site(select(func.count()).select_from(Lead), Lead.site_id), Lead.created_at
        ),
        "errors": await counted(events("error.reported"), EventRecord.at),
        "widget_opens": await counted(events("widget.opened"), EventRecord.at),
    }
    latency_stmt = for_site(
        select(Message.created_at, Message.meta)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.role == "assistant"),
        Conversation.site_id,
    )
    per_bucket: list[list[float]] = [[] for _ in range(buckets)]
    rows = await session.execute(_window(latency_stmt, Message.created_at, since, until))
    for created_at, meta in rows.all():
        if meta and isinstance(meta.get("latency_ms"), int | float):
            per_bucket[(created_at - since) // size].append(float(meta["latency_ms"]))
    figures["answers"] = [len(values) for values in per_bucket]  # as the summary counts them
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "bucket_s": bucket_s,
        "buckets": [(since + i * size).isoformat() for i in range(buckets)],
        "series": {
            **figures,
            "latency_p50_ms": [percentile(values, 50) for values in per_bucket],
            "latency_p95_ms": [percentile(values, 95) for values in per_bucket],
        },
    }

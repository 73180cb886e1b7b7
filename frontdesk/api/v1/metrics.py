"""`GET /api/v1/metrics`: the summary the dashboard shows, computed from the database."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Reader
from frontdesk.api.v1.params import TimeParam, parse_time
from frontdesk.errors import invalid_request
from frontdesk.queries.metrics import summary

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Counts and latency for a time window")
async def metrics(
    principal: Reader,
    services: ServicesDep,
    since: TimeParam = None,
    until: TimeParam = None,
    site_id: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    """Conversations, messages, visitors, leads, errors, quick-action and offer clicks created in
    `[since, until)`, answer latency p50/p95 (ms), and webhook deliveries by outcome."""
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if principal.site_id:
        if site_id and site_id != principal.site_id:
            raise invalid_request("This key is limited to another site.")
        site_id = principal.site_id
    async with services.db.read_scope() as session:
        return await summary(session, site_id=site_id, since=start, until=end)

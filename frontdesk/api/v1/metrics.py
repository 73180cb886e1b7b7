"""`GET /api/v1/metrics` (the summary the dashboard shows) and `GET /api/v1/metrics/series` (the
same figures per time bucket, for charts), computed from the database."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Reader
from frontdesk.api.v1.params import TimeParam, parse_time
from frontdesk.errors import invalid_request
from frontdesk.models import utcnow
from frontdesk.queries.metrics import series, summary
from frontdesk.security.principals import Principal

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
    `[since, until)`, answer latency p50/p95 (ms), and webhook deliveries by outcome. Also:
    `quick_actions` (clicks per action id), `offers` (views, clicks and unlocks per offer id),
    `active_visitors` (visitors who sent a message in the window) and `cached_answers` (answers
    served from the answer cache, out of `answers`)."""
    start, end = parse_time(since, "since"), parse_time(until, "until")
    site_id = _site_for(principal, site_id)
    async with services.db.read_scope() as session:
        return await summary(session, site_id=site_id, since=start, until=end)


MAX_BUCKETS = 1440


@router.get("/metrics/series", summary="Counts and latency per time bucket")
async def metrics_series(
    principal: Reader,
    services: ServicesDep,
    since: TimeParam = None,
    until: TimeParam = None,
    site_id: Annotated[str | None, Query(max_length=40)] = None,
    bucket_s: Annotated[int, Query(ge=1, le=86_400)] = 60,
) -> dict[str, Any]:
    """Conversations, messages, visitors, leads, errors, widget opens and answers per bucket of
    `bucket_s` seconds over `[since, until)`, and answer latency p50/p95 per bucket (null where
    there was no answer). `until` defaults to now and `since` to an hour before it; `since` is
    taken down to a whole second. At most 1,440 buckets."""
    end = parse_time(until, "until") or utcnow().replace(microsecond=0)
    start = parse_time(since, "since") or end - timedelta(hours=1)
    start = start.replace(microsecond=0)
    if end <= start:
        raise invalid_request("until must be later than since.")
    if (end - start) / timedelta(seconds=bucket_s) > MAX_BUCKETS:
        raise invalid_request(
            f"At most {MAX_BUCKETS} buckets: widen bucket_s or narrow the window."
        )
    site_id = _site_for(principal, site_id)
    async with services.db.read_scope() as session:
        return await series(session, site_id=site_id, since=start, until=end, bucket_s=bucket_s)


def _site_for(principal: Principal, site_id: str | None) -> str | None:
    """The site to count: a key limited to one site counts only that one."""
    if principal.site_id:
        if site_id and site_id != principal.site_id:
            raise invalid_request("This key is limited to another site.")
        return principal.site_id
    return site_id

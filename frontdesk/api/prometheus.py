"""`GET /metrics`: the Prometheus text format, for a scraper (docs/operations.md "Metrics").

Open when `FRONTDESK_METRICS_TOKEN` is unset (a scraper on loopback or a private network);
otherwise it takes `Authorization: Bearer <token>`, compared in constant time, and answers 401
`unauthorized` without it. Before the output is generated, the values that live in the database
or in the shared breaker store (the job queue, the circuit states) and the `/ready` checks are
read once, so the scrape shows them as they are now rather than as some process last saw them.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.registry import Collector

from frontdesk.api.deps import ServicesDep
from frontdesk.api.health import readiness_checks
from frontdesk.errors import unauthorized
from frontdesk.observability import metrics
from frontdesk.queries.job_queue import job_queue_summary
from frontdesk.services import Services

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def check_token(request: Request, services: Services) -> None:
    configured = services.settings.metrics_token
    if configured is None:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    expected = configured.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
        raise unauthorized("Send the metrics token as 'Authorization: Bearer <token>'.")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The metrics, in the Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def prometheus_metrics(request: Request, services: ServicesDep) -> Response:
    """Every FrontDesk metric in the Prometheus text format (version 0.0.4). Needs
    `Authorization: Bearer <token>` when `FRONTDESK_METRICS_TOKEN` is set."""
    check_token(request, services)
    for upstream in metrics.known_upstreams():
        try:
            await services.responders.breaker(upstream).state()  # records what it reads
        except Exception:  # noqa: S112 - a store that is down leaves the last seen state
            continue
    checks = await readiness_checks(services)
    extra: list[Collector] = [
        metrics.ReadinessCollector({name: bool(check.get("ok")) for name, check in checks.items()})
    ]
    try:
        async with services.db.read_scope() as session:
            jobs = await job_queue_summary(
                session, now=services.worker.clock.now(), kinds=services.worker.handlers
            )
        extra.append(metrics.JobQueueCollector(jobs))
    except Exception:  # a database outage must not blank every other metric; /ready reports it
        log.warning("the job queue could not be read for /metrics", exc_info=True)
    return Response(metrics.exposition(*extra), media_type=CONTENT_TYPE)

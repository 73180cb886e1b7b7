"""Unhandled server exceptions: folded into their error group and tagged for Sentry.

Called by the 500 handler. The group is written in a short transaction of its own (the request's
unit of work has already rolled back), bounded in time, and a failure to record is logged and
swallowed: a broken database must not turn one failed response into a hung or doubly failed one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request

from frontdesk.actions.errors import do_record_error, server_error_report
from frontdesk.observability.sentry import tag_error_group
from frontdesk.observability.tracing import current_trace_ids
from frontdesk.services import Services

log = logging.getLogger(__name__)
RECORD_TIMEOUT_S = 2.0


def request_facts(request: Request) -> dict[str, Any]:
    """What an error sample keeps of a request: no headers, no query string, no body."""
    route = getattr(request.scope.get("route"), "path", None)
    facts: dict[str, Any] = {"method": request.method, "path": request.url.path[:500]}
    if route:
        facts["route"] = route
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        facts["request_id"] = request_id
    ids = current_trace_ids()
    if ids is not None:
        facts["trace_id"] = ids[0]
    return facts


async def record_server_error(services: Services, request: Request, exc: Exception) -> str | None:
    """Record `exc` into its error group; returns the group id, or None if that failed."""
    report = server_error_report(exc, request_facts(request))
    try:
        async with asyncio.timeout(RECORD_TIMEOUT_S):
            async with services.db.session_scope() as session:
                group_id = await do_record_error(session, report)
    except Exception:
        log.warning("recording a server error failed", exc_info=True)
        return None
    tag_error_group(group_id)
    return group_id

"""Recording what the widget reports: analytics events and error reports.

Known types are recorded as themselves; anything else is kept as `widget.event` with its name, so
a newer widget never loses data on an older server. Data is bounded by the request size limit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.events.recorder import record_event

DIRECT_TYPES = frozenset(
    {
        "widget.opened",
        "quick_action.clicked",
        "offer.viewed",
        "offer.clicked",
        "error.reported",
    }
)


def do_record_widget_events(
    session: AsyncSession,
    *,
    site_id: str,
    visitor_id: str,
    events: list[tuple[str, float | int | None, dict[str, Any]]],
) -> int:
    for type_, at, data in events:
        payload: dict[str, Any] = {"visitor_id": visitor_id, "data": data}
        if at is not None:
            payload["client_at"] = at
        if type_ in DIRECT_TYPES:
            record_event(session, type_, site_id=site_id, data=payload, actor=visitor_id)
        else:
            payload["name"] = type_
            record_event(session, "widget.event", site_id=site_id, data=payload, actor=visitor_id)
    return len(events)

"""Recording what the widget reports: analytics events and error reports.

Known types are recorded as themselves; anything else is kept as `widget.event` with its name, so
a newer widget never loses data on an older server. Data is bounded by the request size limit.
An `error.reported` event is also folded into its error group in the same transaction, and its
event names the group (`error_group_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.errors import ErrorReport, do_record_error, widget_error_report
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


def recorded_type(type_: str) -> str:
    """The event type a widget event is recorded as."""
    return type_ if type_ in DIRECT_TYPES else "widget.event"


@dataclass
class WidgetEventsRecorded:
    count: int = 0
    errors: list[tuple[str, ErrorReport]] = field(default_factory=list)
    """Error reports and their group ids, to forward (e.g. to Sentry) once committed."""


async def do_record_widget_events(
    session: AsyncSession,
    *,
    site_id: str,
    visitor_id: str,
    events: list[tuple[str, float | int | None, dict[str, Any]]],
) -> WidgetEventsRecorded:
    recorded = WidgetEventsRecorded()
    for type_, at, data in events:
        payload: dict[str, Any] = {"visitor_id": visitor_id, "data": data}
        if at is not None:
            payload["client_at"] = at
        if type_ == "error.reported":
            report = widget_error_report(
                site_id=site_id, visitor_id=visitor_id, client_at=at, data=data
            )
            group_id = await do_record_error(session, report)
            payload["error_group_id"] = group_id
            recorded.errors.append((group_id, report))
        recorded_as = recorded_type(type_)
        if recorded_as != type_:
            payload["name"] = type_
        record_event(session, recorded_as, site_id=site_id, data=payload, actor=visitor_id)
        recorded.count += 1
    return recorded

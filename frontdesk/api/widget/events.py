"""Widget analytics and error reports, batched by the widget."""

from __future__ import annotations

from fastapi import APIRouter

from frontdesk.actions.widget_events import DIRECT_TYPES, do_record_widget_events
from frontdesk.api.deps import ServicesDep, WidgetVisitor
from frontdesk.api.limits import enforce_default
from frontdesk.api.widget.schemas import EventsAccepted, WidgetEventBatch
from frontdesk.observability import metrics
from frontdesk.observability.sentry import capture_widget_error

router = APIRouter(tags=["widget"])


@router.post("/events", status_code=202, response_model=EventsAccepted, summary="Report events")
async def post_events(
    body: WidgetEventBatch, visitor: WidgetVisitor, services: ServicesDep
) -> EventsAccepted:
    """Record up to 50 analytics events or error reports from the widget."""
    await enforce_default(services, "visitor_events", visitor.visitor_id)
    async with services.db.session_scope() as session:
        recorded = await do_record_widget_events(
            session,
            site_id=visitor.site_id,
            visitor_id=visitor.visitor_id,
            events=[(e.type, e.at, e.data) for e in body.events],
        )
    # Counted once committed, by the type recorded (any other name is kept as widget.event).
    metrics.widget_events(e.type if e.type in DIRECT_TYPES else "widget.event" for e in body.events)
    for group_id, report in recorded.errors:
        capture_widget_error(group_id, report)
    return EventsAccepted(accepted=recorded.count)

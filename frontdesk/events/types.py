"""Event types and the public shape of an event.

`Event` is what leaves the process (broker, `/ws/events`, webhooks): `{id, type, at, site_id,
data}` plus the persisted `offset`. The known types are listed here so that a typo in an action
fails at once instead of producing an event nobody subscribes to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

EVENT_TYPES = frozenset(
    {
        "site.created",
        "site.updated",
        "visitor.created",
        "visitor.identified",
        "visitor.tokens_revoked",
        "conversation.started",
        "conversation.closed",
        "message.created",
        "lead.captured",
        "widget.opened",
        "widget.event",
        "quick_action.clicked",
        "offer.viewed",
        "offer.clicked",
        "offer.unlocked",
        "operator.created",
        "operator.joined",
        "api_key.created",
        "api_key.revoked",
        "knowledge.document_indexed",
        "responder.failed",
        "responder.circuit_opened",
        "webhook.delivery_succeeded",
        "webhook.delivery_failed",
        "webhook.endpoint_disabled",
        "webhook.test",
        "job.progress",
        "error.reported",
    }
)


class Event(BaseModel):
    id: str
    offset: int
    type: str
    at: datetime
    site_id: str | None
    data: dict[str, Any]

    def public(self) -> dict[str, Any]:
        """The contract's `Event` object (the offset travels beside it, not inside)."""
        return {
            "id": self.id,
            "type": self.type,
            "at": self.at.isoformat(),
            "site_id": self.site_id,
            "data": self.data,
        }

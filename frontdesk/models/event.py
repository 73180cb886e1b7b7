"""Event: every state change, persisted with a global, increasing offset.

The offset is what the live event stream resumes from; the public `id` (`evt_…`) is what
consumers deduplicate by.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from frontdesk.models.base import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class EventRecord(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_site_offset", "site_id", "offset"),
        Index("ix_events_at", "at"),
    )

    offset: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    site_id: Mapped[str | None] = mapped_column(String(40), default=None)
    actor: Mapped[str | None] = mapped_column(String(80), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

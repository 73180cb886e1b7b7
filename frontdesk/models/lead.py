"""Leads: contact details a visitor left (to unlock an offer, or to be called back).

A lead with an `offer_id` also unlocks that offer for its visitor; a verified visitor is the same
visitor on every device, so the unlock follows them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from frontdesk.models.base import Base, JSONType, UTCDateTime, utcnow


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_site_created", "site_id", "created_at"),
        Index("ix_leads_visitor_offer", "visitor_id", "offer_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(ForeignKey("visitors.id", ondelete="CASCADE"))
    conversation_id: Mapped[str | None] = mapped_column(String(40), default=None)
    offer_id: Mapped[str | None] = mapped_column(String(64), default=None)
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    phone: Mapped[str | None] = mapped_column(String(40), default=None)
    referrer: Mapped[str | None] = mapped_column(String(1000), default=None)
    utm: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

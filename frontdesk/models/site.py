"""Site: one embedding of the widget, with its origins, look, responder and limits.

The site secret (used by the site's backend to sign visitor identities) is stored encrypted with
the server key (`security.secrets`), never in clear.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from frontdesk.models.base import Base, JSONType, UTCDateTime, utcnow


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    allowed_origins: Mapped[list[str]] = mapped_column(JSONType, default=list)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    appearance: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    greeting: Mapped[str] = mapped_column(Text, default="")
    locale: Mapped[str] = mapped_column(String(16), default="en")
    responder: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    limits: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    quick_actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    offers: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

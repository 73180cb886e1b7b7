"""Error groups: widget error reports and unhandled server errors, folded by fingerprint.

One row per (source, site, fingerprint) with a running count, first and last sighting and the
last sample (bounded and scrubbed). The fingerprint hashes the error's shape — kind, message with
numbers, ids and URLs stripped, top frame — so the same bug seen a thousand times is one row.

`site_key` exists because a unique constraint treats NULLs as distinct (SQLite, and PostgreSQL
before NULLS NOT DISTINCT): server errors have no site, so they carry `site_key = ""` while
`site_id` stays NULL for honest joins and filters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from frontdesk.models.base import Base, JSONType, UTCDateTime, utcnow

ERROR_SOURCES = ("widget", "server")


class ErrorGroup(Base):
    __tablename__ = "error_groups"
    __table_args__ = (
        UniqueConstraint("source", "site_key", "fingerprint", name="uq_error_groups_group"),
        Index("ix_error_groups_last_seen", "last_seen", "id"),
        Index("ix_error_groups_site_last_seen", "site_id", "last_seen"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str | None] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), default=None
    )
    site_key: Mapped[str] = mapped_column(String(40), default="")
    source: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(String(1000))
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sample: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

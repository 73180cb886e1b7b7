"""Notifications: what an operator is told about, and how they want to be told.

A `NotificationPreference` row holds one operator's choices (which events, in-app and/or email,
immediately or as a digest, quiet hours); an operator without a row gets the defaults. A
`Notification` is one event addressed to one operator: it is shown in the dashboard (read or
unread) and, when the operator asked for email, carries the state of its email.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from frontdesk.models.base import Base, JSONType, UTCDateTime, utcnow

# `email_state`: none (no email wanted) · pending (an email job is queued) · digest (waits for
# the operator's next digest) · sent · skipped (email wanted but no SMTP server configured).
EMAIL_STATES = ("none", "pending", "digest", "sent", "skipped")


class NotificationPreference(Base):
    __tablename__ = "notification_preferences"

    operator_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True
    )
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    site_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)  # empty = every site
    in_app: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[bool] = mapped_column(Boolean, default=False)
    email_mode: Mapped[str] = mapped_column(String(16), default="immediate")
    digest_interval_min: Mapped[int] = mapped_column(Integer, default=60)
    quiet_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    # When the next digest email is due; None when nothing waits for one. Set together with the
    # digest job, so that one job per operator is ever pending.
    digest_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_operator_created", "operator_id", "created_at"),
        Index("ix_notifications_operator_unread", "operator_id", "read_at"),
        Index("ix_notifications_operator_email", "operator_id", "email_state"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    operator_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("operators.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[str | None] = mapped_column(String(40), default=None)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    email_state: Mapped[str] = mapped_column(String(16), default="none")
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

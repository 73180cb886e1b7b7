"""Inbound channels: external systems that bring messages in (a form, a messenger bridge, a CRM
chat) and receive the replies at their callback URL.

Requests in are signed with the channel secret per Standard Webhooks; each `webhook-id` is kept
as a receipt so that a replay creates nothing. Replies go out through a webhook endpoint bound to
the channel (the same secret signs them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from frontdesk.models.base import Base, BigIntPK, UTCDateTime, utcnow


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_sealed: Mapped[str] = mapped_column(Text)
    callback_url: Mapped[str] = mapped_column(String(2000))
    endpoint_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InboundReceipt(Base):
    __tablename__ = "inbound_receipts"
    __table_args__ = (UniqueConstraint("channel_id", "webhook_id", name="uq_inbound_receipt"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    webhook_id: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""Conversation and Message.

`Conversation.last_seq` is the counter that hands out message sequence numbers: an action holds
the conversation row locked while it takes the next number, so `seq` runs 1, 2, 3… without gaps.
`(conversation_id, client_id)` is unique: a message the client sends twice is stored once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from frontdesk.models.base import Base, JSONType, UTCDateTime, utcnow

CONVERSATION_STATUSES = ("open", "closed")
HANDLERS = ("bot", "operator")
ROLES = ("visitor", "assistant", "operator", "system")


class Conversation(Base):
    __tablename__ = "conversations"
    # The list pages newest first by (created_at, id), optionally for one site and/or status:
    # one index per combination, so every page is a range scan that stops after the page.
    __table_args__ = (
        Index("ix_conversations_created_id", "created_at", "id"),
        Index("ix_conversations_site_created_id", "site_id", "created_at", "id"),
        Index("ix_conversations_status_created_id", "status", "created_at", "id"),
        Index("ix_conversations_site_status_created_id", "site_id", "status", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(
        ForeignKey("visitors.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="open")
    channel: Mapped[str] = mapped_column(String(32), default="widget")
    handler: Mapped[str] = mapped_column(String(16), default="bot")
    assigned_operator_id: Mapped[str | None] = mapped_column(String(40), default=None)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        UniqueConstraint("conversation_id", "client_id", name="uq_messages_conversation_client"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(64), default=None)
    reply_to_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    citations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, default=None)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def message_public(message: Message) -> dict[str, Any]:
    """The contract's `Message` object."""
    body: dict[str, Any] = {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "role": message.role,
        "text": message.text,
        "created_at": message.created_at.isoformat(),
    }
    if message.client_id is not None:
        body["client_id"] = message.client_id
    if message.citations:
        body["citations"] = message.citations
    if message.meta:
        # Keys starting with "_" are private (e.g. an upstream engine's conversation id).
        shown = {k: v for k, v in message.meta.items() if not k.startswith("_")}
        if shown:
            body["meta"] = shown
    return body

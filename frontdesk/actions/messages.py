"""Storing messages: validation of text, gap-free sequence numbers, idempotent client ids.

`do_create_message` must run in a `session_scope()`. It locks the conversation row first
(`SELECT … FOR UPDATE` on PostgreSQL; SQLite writers hold the database lock from `BEGIN
IMMEDIATE`), and only then looks for an earlier message with the same `client_id`, so two
concurrent sends of one message can never both insert, and numbering never skips.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from frontdesk.errors import invalid_request, not_found
from frontdesk.events.recorder import new_event, queue_event
from frontdesk.ids import new_id
from frontdesk.models import Conversation, EventRecord, Message, message_public, utcnow

# C0/C1 controls except tab and newline, plus lone surrogates and non-characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check_message_text(text: str, *, max_chars: int) -> str:
    """NFC-normalise, strip control characters and outer whitespace, enforce the length limit."""
    cleaned = _CONTROL.sub("", unicodedata.normalize("NFC", text.replace("\r\n", "\n"))).strip()
    if not cleaned:
        raise invalid_request("text must not be empty.")
    if len(cleaned) > max_chars:
        raise invalid_request(f"text must be at most {max_chars} characters.")
    return cleaned


def check_client_id(client_id: str) -> str:
    if not _CLIENT_ID.match(client_id):
        raise invalid_request("client_id must be 1-64 characters of letters, digits, '-_.:'.")
    return client_id


@dataclass(frozen=True, slots=True)
class StoredMessage:
    message: Message
    created: bool
    conversation: Conversation


# The columns of a message row, in the order the plain-SQL store writes them.
MESSAGE_COLUMNS = (
    "id",
    "conversation_id",
    "seq",
    "role",
    "text",
    "client_id",
    "reply_to_id",
    "citations",
    "meta",
    "created_at",
)


@dataclass(frozen=True, slots=True)
class MessageDraft:
    """A message to store, as its author gives it: the store numbers and dates it."""

    conversation_id: str
    role: str
    text: str
    client_id: str | None = None
    reply_to_id: str | None = None
    citations: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None
    message_id: str | None = None

    def numbered(self, seq: int, now: datetime) -> Message:
        return Message(
            id=self.message_id or new_id("msg"),
            conversation_id=self.conversation_id,
            seq=seq,
            role=self.role,
            text=self.text,
            client_id=self.client_id,
            reply_to_id=self.reply_to_id,
            citations=self.citations or None,
            meta=self.meta or None,
            created_at=now,
        )


def message_values(message: Message) -> dict[str, Any]:
    """The message's row, column by column (`MESSAGE_COLUMNS`)."""
    return {name: getattr(message, name) for name in MESSAGE_COLUMNS}


async def do_create_message(
    session: AsyncSession,
    *,
    conversation_id: str,
    role: str,
    text: str,
    client_id: str | None = None,
    reply_to_id: str | None = None,
    citations: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
    message_id: str | None = None,
    locked: Conversation | None = None,
) -> StoredMessage:
    """`locked`: the conversation, already loaded and locked in this transaction (saves reading
    it again)."""
    draft = MessageDraft(
        conversation_id, role, text, client_id, reply_to_id, citations, meta, message_id
    )
    return await do_store_draft(session, draft, locked=locked)


async def do_store_draft(
    session: AsyncSession, draft: MessageDraft, *, locked: Conversation | None = None
) -> StoredMessage:
    conversation_id = draft.conversation_id
    conversation = locked
    if conversation is None or conversation.id != conversation_id:
        stmt = select(Conversation).where(Conversation.id == conversation_id).with_for_update()
        conversation = (await session.execute(stmt)).scalar_one_or_none()
    if conversation is None:
        raise not_found("The conversation does not exist.")
    if draft.client_id is not None:
        earlier = select(Message).where(
            Message.conversation_id == conversation_id, Message.client_id == draft.client_id
        )
        existing = (await session.execute(earlier)).scalar_one_or_none()
        if existing is not None:
            return StoredMessage(existing, created=False, conversation=conversation)
    now = utcnow()
    seq = conversation.last_seq + 1
    message = draft.numbered(seq, now)
    # Two Core statements instead of the ORM's flush (a turn stores two messages, and the unit
    # of work was most of their cost). The conversation row is locked, so `seq` is the next one.
    conn = await session.connection()
    await conn.execute(
        _BUMP_CONVERSATION,
        {"conversation_id": conversation_id, "seq": seq, "now": now},
    )
    await conn.execute(_INSERT_MESSAGE, message_values(message))
    # The loaded conversation now matches its row, without becoming a pending change.
    for name, value in (("last_seq", seq), ("last_message_at", now), ("updated_at", now)):
        set_committed_value(conversation, name, value)
    queue_event(session, message_event(conversation, message, meta=draft.meta, at=now))
    return StoredMessage(message, created=True, conversation=conversation)


_BUMP_CONVERSATION = (
    update(Conversation)
    .where(Conversation.id == bindparam("conversation_id"))
    .values(
        last_seq=bindparam("seq"), last_message_at=bindparam("now"), updated_at=bindparam("now")
    )
)
_INSERT_MESSAGE = insert(Message)


def message_event(
    conversation: Conversation, message: Message, *, meta: dict[str, Any] | None, at: datetime
) -> EventRecord:
    """The `message.created` event of a message just stored."""
    return new_event(
        "message.created",
        site_id=conversation.site_id,
        data={
            "conversation_id": conversation.id,
            "channel": conversation.channel,
            "message": message_public(message),
        },
        # Who wrote it: the visitor or the operator (the activity feed's actor; notifications
        # never tell operators about their own replies).
        actor=_author(message.role, conversation, meta),
        at=at,
    )


def _author(role: str, conversation: Conversation, meta: dict[str, Any] | None) -> str | None:
    if role == "visitor":
        return conversation.visitor_id
    if role == "operator" and meta and isinstance(meta.get("operator_id"), str):
        return str(meta["operator_id"])
    return None

"""Storing a chat turn's messages: the visitor's message and the bot's answer, each in its own
unit of work, with its `message.created` event published after the commit.

`store_message` is `do_store_draft` inside `Database.session_scope()`, with one difference
in how it runs on SQLite driven from the event loop (the default, ADR 0022): there the unit of
work is five statements in plain SQL on the writer's own connection (ADR 0025). Through the ORM
session the same work cost about 1.4 ms of CPU, and every chat turn pays it twice; in plain SQL
it costs about 0.2 ms. Everything else is the same: the writer's single connection and
`BEGIN IMMEDIATE` serialise writers, the row counter gives the next `seq`, a repeated
`client_id` returns the stored message, the event's offset is the row id SQLite assigns in
commit order, and the event is published only after `COMMIT`. Every other database (and
`FRONTDESK_SQLITE_DRIVER=thread`) takes the session path; the widget API tests run both.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from frontdesk.actions.messages import (
    MESSAGE_COLUMNS,
    MessageDraft,
    StoredMessage,
    do_store_draft,
    message_event,
    message_values,
)
from frontdesk.db import Database
from frontdesk.errors import not_found
from frontdesk.models import Conversation, EventRecord, Message, utcnow
from frontdesk.observability.tracing import sql_span
from frontdesk.queries.conversations import access_conversation
from frontdesk.security.tokens import VisitorClaims
from frontdesk.sqlite_inline import InlineConnection, retry_locked

_CONVERSATION_COLUMNS = (
    "id",
    "site_id",
    "visitor_id",
    "status",
    "channel",
    "handler",
    "assigned_operator_id",
    "last_seq",
    "created_at",
    "updated_at",
    "last_message_at",
)
# The statements name their columns in the orders of `_CONVERSATION_COLUMNS` and
# `MESSAGE_COLUMNS` (literal SQL, nothing interpolated).
_SELECT_CONVERSATION = (
    "SELECT id, site_id, visitor_id, status, channel, handler, assigned_operator_id, last_seq,"
    " created_at, updated_at, last_message_at FROM conversations WHERE id = ?"
)
_SELECT_BY_CLIENT_ID = (
    "SELECT id, conversation_id, seq, role, text, client_id, reply_to_id, citations, meta,"
    " created_at FROM messages WHERE conversation_id = ? AND client_id = ?"
)
_BUMP = "UPDATE conversations SET last_seq = ?, last_message_at = ?, updated_at = ? WHERE id = ?"
_INSERT_MESSAGE = (
    "INSERT INTO messages (id, conversation_id, seq, role, text, client_id, reply_to_id,"
    " citations, meta, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = "INSERT INTO events (id, type, at, site_id, actor, data) VALUES (?, ?, ?, ?, ?, ?)"


async def store_message(
    db: Database,
    *,
    conversation_id: str,
    role: str,
    text: str,
    owner: VisitorClaims | None = None,
    client_id: str | None = None,
    reply_to_id: str | None = None,
    citations: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> StoredMessage:
    """Store one message in its own unit of work. `owner`: the visitor the conversation must
    belong to (anyone else gets `not_found`, as `access_conversation` answers)."""
    draft = MessageDraft(
        conversation_id, role, text, client_id, reply_to_id, citations, meta, message_id
    )
    if db.sqlite_inline:
        return await _store_sqlite(db, owner, draft)
    async with db.session_scope() as session:
        locked = None
        if owner is not None:
            locked = await access_conversation(session, owner, conversation_id, lock=True)
        return await do_store_draft(session, draft, locked=locked)


# --- SQLite in plain SQL -------------------------------------------------------------------------


def _run(sql: sqlite3.Connection, statement: str, parameters: tuple[Any, ...]) -> sqlite3.Cursor:
    """One statement, traced like the statements SQLAlchemy runs."""
    with sql_span(statement, "sqlite", "frontdesk.db"):
        return sql.execute(statement, parameters)


def _db_time(moment: datetime) -> str:
    """A timestamp as SQLAlchemy stores it on SQLite (naive UTC, microseconds always shown)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _from_db_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _db_json(value: Any) -> str:
    return json.dumps(value)  # what SQLAlchemy's JSON type writes on SQLite (None as 'null')


def _message_row(message: Message) -> tuple[Any, ...]:
    values = message_values(message)
    values["created_at"] = _db_time(message.created_at)
    for name in ("citations", "meta"):
        values[name] = _db_json(values[name])
    return tuple(values.values())


def _conversation(row: tuple[Any, ...]) -> Conversation:
    values = dict(zip(_CONVERSATION_COLUMNS, row, strict=True))
    for name in ("created_at", "updated_at", "last_message_at"):
        values[name] = _from_db_time(values[name])
    return Conversation(**values)


def _message(row: tuple[Any, ...]) -> Message:
    values = dict(zip(MESSAGE_COLUMNS, row, strict=True))
    values["created_at"] = _from_db_time(values["created_at"])
    for name in ("citations", "meta"):
        values[name] = None if values[name] is None else json.loads(values[name])
    return Message(**values)


async def _store_sqlite(
    db: Database, owner: VisitorClaims | None, draft: MessageDraft
) -> StoredMessage:
    async with db.connect(db.writer) as pooled:
        # The writer's one pooled connection: holding it is what orders this process's writers.
        inline = (await pooled.get_raw_connection()).driver_connection
        assert isinstance(inline, InlineConnection)
        sql: sqlite3.Connection = inline.sqlite
        # Another process's writer makes BEGIN IMMEDIATE fail at once: wait for it without
        # blocking the loop, as every other statement on this driver does.
        await retry_locked(lambda: sql.execute("BEGIN IMMEDIATE"), inline.busy_timeout_s)
        try:
            stored, event = _write(sql, owner, draft)
            await retry_locked(lambda: sql.execute("COMMIT"), inline.busy_timeout_s)
        except BaseException:
            sql.execute("ROLLBACK")
            raise
    if event is not None and db.publisher is not None:
        await db.publisher.publish_events([event])
    return stored


def _write(
    sql: sqlite3.Connection, owner: VisitorClaims | None, draft: MessageDraft
) -> tuple[StoredMessage, EventRecord | None]:
    """The unit of work, run between BEGIN IMMEDIATE and COMMIT (no await: nothing else runs on
    the loop meanwhile)."""
    conversation_id = draft.conversation_id
    row = _run(sql, _SELECT_CONVERSATION, (conversation_id,)).fetchone()
    if row is None:
        raise not_found("No such conversation." if owner else "The conversation does not exist.")
    conversation = _conversation(row)
    if owner is not None and (
        conversation.visitor_id != owner.visitor_id or conversation.site_id != owner.site_id
    ):
        raise not_found("No such conversation.")
    if draft.client_id is not None:
        earlier = _run(sql, _SELECT_BY_CLIENT_ID, (conversation_id, draft.client_id)).fetchone()
        if earlier is not None:
            return StoredMessage(_message(earlier), created=False, conversation=conversation), None
    now = utcnow()
    stamp = _db_time(now)
    seq = conversation.last_seq + 1
    message = draft.numbered(seq, now)
    _run(sql, _BUMP, (seq, stamp, stamp, conversation_id))
    _run(sql, _INSERT_MESSAGE, _message_row(message))
    conversation.last_seq, conversation.last_message_at, conversation.updated_at = seq, now, now
    event = message_event(conversation, message, meta=draft.meta, at=now)
    values = (event.id, event.type, stamp, event.site_id, event.actor, _db_json(event.data))
    event.offset = int(_run(sql, _INSERT_EVENT, values).lastrowid or 0)
    return StoredMessage(message, created=True, conversation=conversation), event

"""`store_message`: SQLite's plain-SQL unit of work stores exactly what the session path stores,
waits for another process's lock instead of failing, and a refused store leaves nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from frontdesk.actions.conversations import do_start_conversation
from frontdesk.actions.message_store import store_message
from frontdesk.actions.sites import do_create_site
from frontdesk.config import Settings, load_settings
from frontdesk.db import Database
from frontdesk.errors import AppError
from frontdesk.migrate import upgrade
from frontdesk.models import Conversation, EventRecord, Message, Visitor, utcnow
from frontdesk.security.keys import SecretBox
from frontdesk.security.tokens import VisitorClaims


class Published:
    def __init__(self) -> None:
        self.events: list[EventRecord] = []

    async def publish_events(self, events: list[Any]) -> None:
        self.events.extend(events)


async def _database(tmp_path: Path, driver: str) -> tuple[Database, Published, Settings]:
    settings = load_settings(
        data_dir=tmp_path / driver, public_url="http://testserver", sqlite_driver=driver
    )
    published = Published()
    db = Database(settings, publisher=published)
    await upgrade(db)
    return db, published, settings


async def _conversation(db: Database, settings: Settings) -> tuple[str, VisitorClaims]:
    box = SecretBox(settings.server_key, settings.previous_server_keys)
    async with db.session_scope() as session:
        site = (await do_create_site(session, box, name="Shop", origins=["https://a.example"])).site
        session.add(Visitor(id="vis_one", site_id=site.id, created_at=utcnow()))
    async with db.session_scope() as session:
        conversation = await do_start_conversation(session, site_id=site.id, visitor_id="vis_one")
    return conversation.id, VisitorClaims(site.id, "vis_one", False, 2**40)


async def _turn(db: Database, conversation_id: str, owner: VisitorClaims) -> list[Any]:
    """A visitor message, its repeat, and an answer with citations and meta; what was returned."""
    first = await store_message(
        db, owner=owner, conversation_id=conversation_id, role="visitor", text="Hi", client_id="c1"
    )
    again = await store_message(
        db, owner=owner, conversation_id=conversation_id, role="visitor", text="Hi", client_id="c1"
    )
    answer = await store_message(
        db,
        conversation_id=conversation_id,
        role="assistant",
        text="Hello!",
        reply_to_id=first.message.id,
        citations=[{"title": "Docs › Start", "snippet": 'é \u2014 "quoted"'}],
        meta={"responder": "knowledge", "latency_ms": 1.5, "_upstream": {"id": "x"}},
        message_id="msg_answer",
    )
    return [first, again, answer]


def _shape(message: Message) -> dict[str, Any]:
    return {
        "seq": message.seq,
        "role": message.role,
        "text": message.text,
        "client_id": message.client_id,
        "reply_to": message.reply_to_id is not None,
        "citations": message.citations,
        "meta": message.meta,
        "aware": message.created_at.tzinfo is not None,
    }


async def _stored(db: Database, conversation_id: str) -> dict[str, Any]:
    async with db.read_scope() as session:
        messages = list(
            (
                await session.execute(
                    select(Message)
                    .where(Message.conversation_id == conversation_id)
                    .order_by(Message.seq)
                )
            ).scalars()
        )
        events = list(
            (
                await session.execute(
                    select(EventRecord)
                    .where(EventRecord.type == "message.created")
                    .order_by(EventRecord.offset)
                )
            ).scalars()
        )
        conversation = await session.get(Conversation, conversation_id)
    assert conversation is not None and conversation.last_message_at is not None
    return {
        "messages": [_shape(m) for m in messages],
        "events": [
            (e.actor is not None, e.data["channel"], e.data["message"]["seq"]) for e in events
        ],
        "last_seq": conversation.last_seq,
        "last_message_at_is_last": conversation.last_message_at == messages[-1].created_at,
    }


async def test_plain_sql_stores_what_the_session_path_stores(tmp_path: Path) -> None:
    results = {}
    for driver in ("inline", "thread"):  # plain SQL, then the ORM session on aiosqlite
        db, published, settings = await _database(tmp_path, driver)
        assert db.sqlite_inline is (driver == "inline")
        try:
            conversation_id, owner = await _conversation(db, settings)
            first, again, answer = await _turn(db, conversation_id, owner)
            assert (first.created, again.created, answer.created) == (True, False, True)
            assert again.message.id == first.message.id
            assert answer.message.id == "msg_answer" and answer.conversation.last_seq == 2
            # One event per stored message, published after the commit with its offset.
            sent = [e for e in published.events if e.type == "message.created"]
            assert [e.data["message"]["seq"] for e in sent] == [1, 2]
            assert all(isinstance(e.offset, int) and e.offset > 0 for e in sent)
            assert "_upstream" not in sent[1].data["message"]["meta"]
            results[driver] = await _stored(db, conversation_id)
        finally:
            await db.dispose()
    assert results["inline"] == results["thread"]
    assert results["inline"]["last_seq"] == 2 and results["inline"]["last_message_at_is_last"]


async def test_another_visitor_or_conversation_gets_not_found_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    db, published, settings = await _database(tmp_path, "inline")
    try:
        conversation_id, owner = await _conversation(db, settings)
        before = len(published.events)
        stranger = VisitorClaims(owner.site_id, "vis_other", False, 2**40)
        for who, conversation in ((stranger, conversation_id), (owner, "conv_missing")):
            with pytest.raises(AppError) as error:
                await store_message(
                    db, owner=who, conversation_id=conversation, role="visitor", text="x"
                )
            assert error.value.code == "not_found"
        assert len(published.events) == before
        async with db.read_scope() as session:
            assert (await session.execute(select(Message))).first() is None
            conversation = await session.get(Conversation, conversation_id)
            assert conversation is not None and conversation.last_seq == 0
        # The writer is usable afterwards (the refused units of work were rolled back).
        stored = await store_message(
            db, owner=owner, conversation_id=conversation_id, role="visitor", text="ok"
        )
        assert stored.message.seq == 1
    finally:
        await db.dispose()


async def test_waits_for_another_process_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    db, _, settings = await _database(tmp_path, "inline")
    try:
        conversation_id, owner = await _conversation(db, settings)
        other = sqlite3.connect(settings.data_dir / "frontdesk.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # as another process's writer would
        ticks = 0

        async def ticking() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(ticking())
        store = asyncio.create_task(
            store_message(
                db, owner=owner, conversation_id=conversation_id, role="visitor", text="later"
            )
        )
        await asyncio.sleep(0.15)
        assert not store.done() and ticks >= 10  # waiting, and the loop kept running
        other.execute("COMMIT")
        other.close()
        stored = await asyncio.wait_for(store, 5)
        ticker.cancel()
        assert stored.created and stored.message.seq == 1
    finally:
        await db.dispose()

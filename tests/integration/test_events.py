"""Events are recorded in the transaction and published only after it commits."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from sqlalchemy import func, select, update

from frontdesk.actions.conversations import do_start_conversation
from frontdesk.actions.messages import do_create_message
from frontdesk.actions.operators import do_create_operator
from frontdesk.actions.webhooks import do_create_endpoint
from frontdesk.config import Settings
from frontdesk.db import Database
from frontdesk.events.cursors import skip_unwatched
from frontdesk.events.recorder import record_event
from frontdesk.models import EventRecord, Message, Operator, SystemMeta
from frontdesk.notifications.fanout import CURSOR as NOTIFICATION_CURSOR
from frontdesk.notifications.fanout import WATCHERS as NOTIFICATION_WATCHERS
from frontdesk.security.keys import SecretBox
from frontdesk.services import Services
from frontdesk.webhooks.fanout import CURSOR as WEBHOOK_CURSOR
from frontdesk.webhooks.fanout import WATCHERS as WEBHOOK_WATCHERS
from tests.conftest import SiteInfo, Visitor


class Boom(Exception):
    pass


async def test_rolled_back_action_publishes_nothing(
    services: Services, site: SiteInfo, visitor: Visitor
) -> None:
    async with services.db.session_scope() as session:
        conversation = await do_start_conversation(session, site_id=site.id, visitor_id=visitor.id)
    received: list[bytes] = []
    async with services.broker.subscribe("events") as subscription:

        async def pump() -> None:
            async for payload in subscription:
                received.append(payload)

        task = asyncio.create_task(pump())
        with pytest.raises(Boom):
            async with services.db.session_scope() as session:
                await do_create_message(
                    session, conversation_id=conversation.id, role="visitor", text="never"
                )
                await session.flush()
                raise Boom
        await asyncio.sleep(0.05)
        assert received == []
        async with services.db.read_scope() as session:
            assert (await session.execute(select(func.count()).select_from(Message))).scalar() == 0
            types = (await session.execute(select(EventRecord.type))).scalars().all()
            assert "message.created" not in types

        async with services.db.session_scope() as session:
            await do_create_message(
                session, conversation_id=conversation.id, role="visitor", text="kept"
            )
            await session.flush()
            assert received == []  # not before the commit
        await asyncio.sleep(0.05)
        task.cancel()
    assert len(received) == 1
    published = orjson.loads(received[0])
    assert published["event"]["type"] == "message.created"
    assert published["event"]["data"]["message"]["text"] == "kept"
    assert published["event"]["data"]["message"]["seq"] == 1  # the rolled-back seq was not used


async def test_events_have_increasing_offsets(
    services: Services, site: SiteInfo, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    await visitor.send(conversation_id, "hello")
    await services.turns.drain()
    async with services.db.read_scope() as session:
        rows = (
            (await session.execute(select(EventRecord).order_by(EventRecord.offset)))
            .scalars()
            .all()
        )
    offsets = [r.offset for r in rows]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    types = [r.type for r in rows]
    assert types[-3:] == ["conversation.started", "message.created", "message.created"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_runs_in_wal_mode(services: Services) -> None:
    from sqlalchemy import text

    async with services.db.read_scope() as session:
        mode = (await session.execute(text("PRAGMA journal_mode"))).scalar()
    assert mode == "wal"


async def test_cursors_nobody_watches_move_to_the_head_and_never_back(settings: Settings) -> None:
    """`skip_unwatched`: with no webhook endpoint the webhook cursor jumps to the log's head in
    one statement; the notification cursor, with an operator to notify, stays for its fan-out;
    a cursor already past the head is left where it is."""
    db = Database(settings)
    box = SecretBox(settings.server_key, settings.previous_server_keys)
    async with db.session_scope() as session:
        await do_create_operator(session, email="ops@example.com", password="pw-" + "x" * 16)
        for i in range(3):
            record_event(session, "site.updated", site_id=None, data={"i": i})
    async with db.read_scope() as session:
        head = (await session.execute(select(func.max(EventRecord.offset)))).scalar_one()

    async def positions() -> dict[str, int]:
        async with db.read_scope() as session:
            rows = await session.execute(select(SystemMeta.key, SystemMeta.value))
            return {key: int(value) for key, value in rows if key.endswith("_cursor")}

    before = await positions()
    assert before[WEBHOOK_CURSOR] < head and before[NOTIFICATION_CURSOR] < head
    watchers = {WEBHOOK_CURSOR: WEBHOOK_WATCHERS, NOTIFICATION_CURSOR: NOTIFICATION_WATCHERS}
    assert await skip_unwatched(db, watchers) == {WEBHOOK_CURSOR}
    after = await positions()
    assert after[WEBHOOK_CURSOR] == head
    assert after[NOTIFICATION_CURSOR] == before[NOTIFICATION_CURSOR]

    # An endpoint now watches: its cursor stays for the fan-out to move.
    async with db.session_scope() as session:
        await do_create_endpoint(
            session, box, url="https://hooks.example.com/x", events=["*"], site_id=None, actor=None
        )
        record_event(session, "site.updated", site_id=None, data={"i": 3})
    assert await skip_unwatched(db, watchers) == frozenset()
    assert (await positions())[WEBHOOK_CURSOR] == head

    # Moved further by another process: never moved back.
    async with db.session_scope() as session:
        cursor = await session.get(SystemMeta, NOTIFICATION_CURSOR)
        assert cursor is not None
        cursor.value = str(head + 100)
        await session.execute(update(Operator).values(disabled=True))
    assert await skip_unwatched(db, watchers) == frozenset()
    assert (await positions())[NOTIFICATION_CURSOR] == head + 100
    await db.dispose()

"""Events are recorded in the transaction and published only after it commits."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from sqlalchemy import func, select

from frontdesk.actions.conversations import do_start_conversation
from frontdesk.actions.messages import do_create_message
from frontdesk.models import EventRecord, Message
from frontdesk.services import Services
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

"""A conversation feed: one joined conversation on one connection, complete and in order.

The feed remembers the last `seq` it delivered. A live message with the next `seq` is sent at
once; one already delivered is dropped; one further ahead means publications were lost, so the
missing messages are read from the database first. `RESYNC` from the broker (Redis came back)
and a periodic check catch a loss with nothing after it. Deltas and typing pass through.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from frontdesk.db import Database
from frontdesk.models import message_public
from frontdesk.queries.conversations import list_messages
from frontdesk.realtime.broker import RESYNC, Broker
from frontdesk.realtime.outbox import Outbox

PAGE = 200


class ConversationFeed:
    def __init__(
        self,
        conversation_id: str,
        *,
        db: Database,
        broker: Broker,
        outbox: Outbox,
        after_seq: int,
        check_every_s: float = 15.0,
    ) -> None:
        self.conversation_id = conversation_id
        self.db = db
        self.broker = broker
        self.outbox = outbox
        self.last_seq = after_seq
        self.check_every_s = check_every_s
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._released = asyncio.Event()
        self._answered: set[str] = set()
        self.gap_fills = 0

    async def start(self) -> tuple[list[dict[str, Any]], bool]:
        """Subscribe, then read history after `last_seq`; returns (messages, has_more)."""
        self._task = asyncio.create_task(self._run())
        await self._subscribed.wait()
        async with self.db.read_scope() as session:
            rows, has_more = await list_messages(
                session, self.conversation_id, after_seq=self.last_seq, limit=PAGE
            )
        messages = [message_public(m) for m in rows]
        if messages:
            self.last_seq = messages[-1]["seq"]
        return messages, has_more

    def release(self) -> None:
        """Start delivering live frames (call right after sending `joined`)."""
        self._released.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        channel = f"conversation:{self.conversation_id}"
        async with self.broker.subscribe(channel) as subscription:
            self._subscribed.set()
            await self._released.wait()  # nothing live goes out before `joined`
            while True:
                payload = await subscription.next(self.check_every_s)
                if payload is None:  # quiet for a while: make sure nothing was lost
                    await self.catch_up()
                    continue
                if payload == RESYNC:
                    await self.catch_up()
                else:
                    await self._handle(orjson.loads(payload))

    async def _handle(self, envelope: dict[str, Any]) -> None:
        kind = envelope.get("kind")
        if kind == "event":
            event = envelope["event"]
            if event.get("type") == "message.created":
                await self._deliver(event["data"]["message"])
        elif kind == "delta":
            frame = envelope["frame"]
            if frame.get("message_id") not in self._answered:
                self.outbox.send(frame)
        elif kind in ("typing", "frame"):
            self.outbox.send(envelope["frame"])

    async def _deliver(self, message: dict[str, Any]) -> None:
        seq = int(message["seq"])
        if seq <= self.last_seq:
            return
        if seq > self.last_seq + 1:
            self.gap_fills += 1
            await self.catch_up()
            if seq <= self.last_seq:
                return
        self._send(message)

    def _send(self, message: dict[str, Any]) -> None:
        self._answered.add(str(message["id"]))
        if len(self._answered) > 1000:
            self._answered.clear()
        self.outbox.send({"type": "message", "message": message})
        self.last_seq = int(message["seq"])

    async def catch_up(self) -> None:
        """Send every stored message after `last_seq`, in order."""
        while True:
            async with self.db.read_scope() as session:
                rows, has_more = await list_messages(
                    session, self.conversation_id, after_seq=self.last_seq, limit=PAGE
                )
            for row in rows:
                self._send(message_public(row))
            if not has_more:
                return

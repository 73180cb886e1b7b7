"""Conversation feeds: every local connection following one conversation, complete and in order.

A `ConversationFeed` is one connection's place in one conversation: the last `seq` it was sent
and the outbox to send to. All feeds of a conversation in this process share one
`ConversationChannel`, which is the broker listener for `conversation:{id}`: each publication is
decoded once and each outgoing frame encoded once, both as text and as the WebSocket frame that
direct wires write (`frontdesk/realtime/wire.py`), and the same goes to every feed.

A live message with the next `seq` of a feed is sent at once; one already sent is dropped; one
further ahead means publications were lost, so the channel reads the missing messages from the
database (one read for all its feeds) and sends them in order; it does the same on `RESYNC` (the
broker lost publications), for a feed that joined with more history than one page, and when the
hub's quiet check finds the database ahead of the feeds. While that repair runs, live messages
are left to it (it reads until it has everything published so far), so a feed never receives
messages out of order. Deltas (unless their answer was already stored) and typing pass through.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from frontdesk.models import message_public
from frontdesk.queries.conversations import list_messages
from frontdesk.realtime.broker import RESYNC
from frontdesk.realtime.outbox import Outbox
from frontdesk.realtime.wire import text_frame

if TYPE_CHECKING:
    from frontdesk.db import Database

log = logging.getLogger(__name__)
PAGE = 200
RECENT_ANSWERS = 8  # stored messages remembered per conversation, to drop their late deltas


def shared(frame: dict[str, Any]) -> tuple[str, bytes]:
    """`frame` encoded once for every feed: its text, and the same as a WebSocket frame."""
    payload = orjson.dumps(frame)
    return payload.decode(), text_frame(payload)


class ConversationFeed:
    """One connection following one conversation. Not `live` until its `joined` frame is out:
    nothing live may go before it."""

    __slots__ = ("conversation_id", "last_seq", "live", "outbox")

    def __init__(self, conversation_id: str, outbox: Outbox, after_seq: int) -> None:
        self.conversation_id = conversation_id
        self.outbox = outbox
        self.last_seq = after_seq
        self.live = False


class ConversationChannel:
    """The feeds of one conversation in this process, and its broker listener."""

    __slots__ = (
        "_again",
        "_repair",
        "_stored",
        "conversation_id",
        "db",
        "feeds",
        "head",
        "heard",
        "name",
        "subscribing",
    )

    def __init__(self, conversation_id: str, db: Database) -> None:
        self.conversation_id = conversation_id
        self.name = f"conversation:{conversation_id}"
        self.db = db
        self.feeds: set[ConversationFeed] = set()
        self.head = 0  # the highest `seq` this channel knows to be stored
        self.heard = False  # a publication since the hub's last quiet check
        self.subscribing: asyncio.Future[None] | None = None  # until the broker listens
        self._stored: list[str] | None = None  # ids of the last messages stored
        self._repair: asyncio.Task[None] | None = None
        self._again = False

    def __call__(self, payload: bytes) -> None:
        """The broker listener. The fan-out runs in the event loop's next turn, so the publisher
        (the request that stored a message, the Redis reader) does not wait for it; publications
        keep their order (callbacks run first in, first out)."""
        asyncio.get_running_loop().call_soon(self._publication, payload)

    def _publication(self, payload: bytes) -> None:
        try:
            self._handle(payload)
        except Exception:  # logged here: the loop's own handler would log the payload too
            log.exception(
                "conversation publication failed", extra={"conversation_id": self.conversation_id}
            )

    def _handle(self, payload: bytes) -> None:
        """One publication on `conversation:{id}`."""
        self.heard = True
        if payload == RESYNC:
            self.repair()
            return
        envelope = orjson.loads(payload)
        kind = envelope.get("kind")
        if kind == "event":
            event = envelope["event"]
            if event.get("type") == "message.created":
                self._message(event["data"]["message"])
        elif kind == "delta":
            frame = envelope["frame"]
            if self._stored is None or frame.get("message_id") not in self._stored:
                for feed in self.feeds:
                    if feed.live:
                        feed.outbox.send(frame)  # the outbox merges deltas per answer
        elif kind in ("typing", "frame"):
            text, frame = shared(envelope["frame"])
            for feed in self.feeds:
                if feed.live:
                    feed.outbox.send_text(text, frame)

    def _note_stored(self, message: dict[str, Any]) -> int:
        seq = int(message["seq"])
        if seq > self.head:
            self.head = seq
        if self._stored is None:
            self._stored = []
        self._stored.append(str(message["id"]))
        if len(self._stored) > RECENT_ANSWERS:
            del self._stored[0]
        return seq

    def _message(self, message: dict[str, Any]) -> None:
        seq = self._note_stored(message)
        if self._repair is not None:
            return  # the repair reads up to `head`, in order
        previous, behind = seq - 1, False
        text, frame = shared({"type": "message", "message": message})
        for feed in self.feeds:  # once per subscriber: keep it lean
            if not feed.live:
                continue
            if feed.last_seq == previous:
                feed.last_seq = seq
                feed.outbox.send_text(text, frame)
            elif feed.last_seq < previous:
                behind = True
        if behind:
            self.repair()

    def go_live(self, feed: ConversationFeed, has_more: bool) -> None:
        """Deliver live frames to `feed` from now on (its `joined` is out). Anything stored after
        its history page, or published while it was read, comes from the database."""
        feed.live = True
        if has_more or feed.last_seq < self.head:
            self.repair()

    def repair(self) -> None:
        """Read from the database what the feeds are missing (one repair at a time; a request
        during one makes it read again)."""
        if self._repair is None:
            self._repair = asyncio.get_running_loop().create_task(self._run_repair())
        else:
            self._again = True

    async def _run_repair(self) -> None:
        try:
            while True:
                self._again = False
                await self._catch_up()
                if not self._again:
                    return
        except Exception:  # the database is away: the next publication or quiet check retries
            log.warning(
                "conversation repair failed",
                extra={"conversation_id": self.conversation_id},
                exc_info=True,
            )
        finally:
            self._repair = None

    async def _catch_up(self) -> None:
        while True:
            live = [feed for feed in self.feeds if feed.live]
            if not live:
                return
            head_before = self.head
            async with self.db.read_scope() as session:
                rows, has_more = await list_messages(
                    session,
                    self.conversation_id,
                    after_seq=min(f.last_seq for f in live),
                    limit=PAGE,
                )
            delivered = False
            for row in rows:
                message = message_public(row)
                self._note_stored(message)
                encoded = None
                for feed in self.feeds:
                    if feed.live and feed.last_seq == row.seq - 1:
                        if encoded is None:
                            encoded = shared({"type": "message", "message": message})
                        feed.last_seq = row.seq
                        feed.outbox.send_text(*encoded)
                        delivered = True
            if has_more:
                continue
            if all(feed.last_seq >= self.head for feed in self.feeds if feed.live):
                return
            if not delivered and self.head == head_before:
                return  # what is missing is not in the database (deleted meanwhile)

    def close(self) -> None:
        if self._repair is not None:
            self._repair.cancel()
            self._repair = None

"""The conversation hub: which local connections follow which conversation, process-wide.

One `ConversationChannel` per conversation that at least one local connection (a `/ws/chat`
socket or an SSE stream) follows, holding one broker subscription however many follow it; the
channel goes, and its subscription with it, when the last one leaves. `follow` subscribes before
it reads the history, so nothing stored in between is missed; `go_live` starts live delivery once
the `joined` frame is out; `unfollow` is called for every feed that `follow` was called for.

While channels exist, one quiet check runs every `ws_feed_check_s`: for the conversations that
had no publication since the last check, one query reads their last `seq` (in batches), and a
channel whose feeds are behind repairs from the database. That catches a lost publication with
nothing after it (a process that stopped between commit and publish, Redis away) at the cost of
one small query per batch of quiet conversations, not one read per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from frontdesk.models import message_public
from frontdesk.queries.conversations import conversation_heads, list_messages
from frontdesk.realtime.feed import PAGE, ConversationChannel, ConversationFeed

if TYPE_CHECKING:
    from frontdesk.config import Settings
    from frontdesk.db import Database
    from frontdesk.realtime.broker import Broker

log = logging.getLogger(__name__)
CHECK_BATCH = 500  # conversations per quiet-check query


class ConversationHub:
    def __init__(self, settings: Settings, db: Database, broker: Broker) -> None:
        self.settings = settings
        self.db = db
        self.broker = broker
        self._channels: dict[str, ConversationChannel] = {}
        self._checker: asyncio.Task[None] | None = None

    @property
    def conversations(self) -> list[str]:
        """The conversations followed in this process now."""
        return list(self._channels)

    def channel(self, conversation_id: str) -> ConversationChannel | None:
        return self._channels.get(conversation_id)

    async def follow(self, feed: ConversationFeed) -> tuple[list[dict[str, Any]], bool]:
        """Subscribe `feed`, then read its history after `last_seq` (one page); returns
        (messages, has_more) and moves `last_seq` to the last one."""
        channel = self._channels.get(feed.conversation_id)
        if channel is None:
            channel = ConversationChannel(feed.conversation_id, self.db)
            self._channels[feed.conversation_id] = channel
            channel.feeds.add(feed)
            subscribed = channel.subscribing = asyncio.get_running_loop().create_future()
            try:
                await self.broker.listen(channel.name, channel)
            finally:
                channel.subscribing = None
                subscribed.set_result(None)
            self._start_checker()
        else:
            channel.feeds.add(feed)
            if channel.subscribing is not None:
                await asyncio.shield(channel.subscribing)
        async with self.db.read_scope() as session:
            rows, has_more = await list_messages(
                session, feed.conversation_id, after_seq=feed.last_seq, limit=PAGE
            )
        messages = [message_public(m) for m in rows]
        if messages:
            feed.last_seq = messages[-1]["seq"]
            channel.head = max(channel.head, feed.last_seq)
        return messages, has_more

    def go_live(self, feed: ConversationFeed, has_more: bool) -> None:
        channel = self._channels.get(feed.conversation_id)
        if channel is not None and feed in channel.feeds:
            channel.go_live(feed, has_more)

    async def unfollow(self, feed: ConversationFeed) -> None:
        feed.live = False
        channel = self._channels.get(feed.conversation_id)
        if channel is None or feed not in channel.feeds:
            return
        channel.feeds.discard(feed)
        if channel.feeds:
            return
        del self._channels[feed.conversation_id]
        channel.close()
        if not self._channels and self._checker is not None:
            self._checker.cancel()
            self._checker = None
        await self.broker.unlisten(channel.name, channel)

    def _start_checker(self) -> None:
        if self._checker is None:
            self._checker = asyncio.get_running_loop().create_task(self._check_quiet())

    async def _check_quiet(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ws_feed_check_s)
            try:
                await self.check_now()
            except Exception:  # the database is away: the next check tries again
                log.warning("quiet conversation check failed", exc_info=True)

    async def check_now(self) -> None:
        """Repair every quiet conversation whose feeds are behind the database."""
        quiet = []
        for channel in self._channels.values():
            if not channel.heard:
                quiet.append(channel)
            channel.heard = False
        for start in range(0, len(quiet), CHECK_BATCH):
            batch = quiet[start : start + CHECK_BATCH]
            async with self.db.read_scope() as session:
                heads = await conversation_heads(session, [c.conversation_id for c in batch])
            for channel in batch:
                stored = heads.get(channel.conversation_id, 0)
                if stored > channel.head:
                    channel.head = stored
                if any(f.live and f.last_seq < channel.head for f in channel.feeds):
                    channel.repair()

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None
        for channel in self._channels.values():
            channel.close()

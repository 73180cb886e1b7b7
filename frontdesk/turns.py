"""Answer turns: running a site's responder for one visitor message.

A turn runs as its own task, independent of the request that started it: a visitor who closes the
tab still gets the answer stored. Its frames (`delta`, the final `message`, `message_end`, or
`error`) are kept on the turn so that a late reader (an SSE stream, a retried request) sees all of
them in order; deltas are also published to the conversation's broker channel for live readers
elsewhere. Only the final message is persisted, through `store_message`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from frontdesk.actions.message_store import store_message
from frontdesk.actions.responders import do_record_circuit_opened, do_record_responder_failure
from frontdesk.db import Database
from frontdesk.ids import new_id
from frontdesk.models import Message, message_public
from frontdesk.observability import metrics
from frontdesk.observability.tracing import turn_span
from frontdesk.queries.conversations import recent_messages
from frontdesk.queries.sites import SiteView
from frontdesk.realtime.broker import Broker
from frontdesk.responders.base import AnswerRequest, Delta, FinalAnswer, HistoryItem, ResponderError
from frontdesk.responders.cache import AnswerCache
from frontdesk.responders.chain import GRACEFUL
from frontdesk.responders.registry import ResponderFactory

log = logging.getLogger(__name__)
HISTORY_WINDOW = 20


class Turn:
    """The frames of one answer, readable from the start by any number of readers."""

    def __init__(self, conversation_id: str, visitor_message: Message) -> None:
        self.conversation_id = conversation_id
        self.visitor_message = visitor_message
        self.answer_id = new_id("msg")
        self.frames: list[dict[str, Any]] = []
        self.done = False
        self._changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    async def emit(self, frame: dict[str, Any], *, final: bool = False) -> None:
        async with self._changed:
            self.frames.append(frame)
            self.done = self.done or final
            self._changed.notify_all()

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        async for batch in self.follow_batches():
            for frame in batch:
                yield frame

    async def follow_batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The frames in order, in the batches they were ready in (one write each for SSE)."""
        seen = 0
        while True:
            async with self._changed:
                await self._changed.wait_for(self._has_more(seen))
                batch, finished = self.frames[seen:], self.done
            seen += len(batch)
            if batch:
                yield batch
            if finished and seen >= len(self.frames):
                return

    def _has_more(self, seen: int) -> Callable[[], bool]:
        return lambda: seen < len(self.frames) or self.done


class TurnRunner:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        responders: ResponderFactory,
        cache: AnswerCache,
        *,
        timeout_s: float,
    ) -> None:
        self.db = db
        self.broker = broker
        self.responders = responders
        self.cache = cache
        self.timeout_s = timeout_s
        self._turns: dict[str, Turn] = {}

    def get(self, visitor_message_id: str) -> Turn | None:
        return self._turns.get(visitor_message_id)

    def start(self, site: SiteView, visitor_id: str, message: Message) -> Turn:
        turn = Turn(message.conversation_id, message)
        self._turns[message.id] = turn
        turn.task = asyncio.create_task(self._traced_run(site, visitor_id, turn))
        turn.task.add_done_callback(lambda _: self._turns.pop(message.id, None))
        return turn

    async def drain(self, timeout_s: float = 10.0) -> None:
        tasks = [t.task for t in self._turns.values() if t.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    async def _publish(self, conversation_id: str, envelope: dict[str, Any]) -> None:
        """Ephemeral frames for live readers elsewhere (other tabs, other processes)."""
        try:
            await self.broker.publish(f"conversation:{conversation_id}", orjson.dumps(envelope))
        except Exception:
            log.debug("publication failed", exc_info=True)

    async def _publish_delta(self, frame: dict[str, Any]) -> None:
        await self._publish(frame["conversation_id"], {"kind": "delta", "frame": frame})

    async def _traced_run(self, site: SiteView, visitor_id: str, turn: Turn) -> None:
        # The task inherits the request's context: this span is a child of the request's, and
        # the turn's log lines carry the request id.
        with turn_span(site.id, turn.conversation_id):
            await self._run(site, visitor_id, turn)

    async def _run(self, site: SiteView, visitor_id: str, turn: Turn) -> None:
        started = time.perf_counter()
        locale = site.locale
        try:
            async with asyncio.timeout(self.timeout_s):
                final = await self._answer(site, visitor_id, turn)
            text, citations, meta = final.text, final.citations, {**final.meta}
            if final.usage:
                meta["usage"] = final.usage
            if meta.get("fallback"):
                error = {
                    "type": "error",
                    "code": "upstream_unavailable",
                    "message": "The assistant could not answer; a fallback reply follows.",
                    "conversation_id": turn.conversation_id,
                }
                await turn.emit(error)
                await self._publish(turn.conversation_id, {"kind": "frame", "frame": error})
        except Exception as exc:  # a bug or the overall timeout: the visitor still gets a reply
            log.warning("answer failed: %r", exc, extra={"site_id": site.id}, exc_info=True)
            if not isinstance(exc, TimeoutError):
                metrics.server_error("turn")
            await turn.emit(
                {
                    "type": "error",
                    "code": "upstream_unavailable",
                    "message": "The assistant could not answer; a fallback reply follows.",
                    "conversation_id": turn.conversation_id,
                }
            )
            text = GRACEFUL.get(locale, GRACEFUL["en"])
            citations, meta = [], {"fallback": True}
        elapsed = time.perf_counter() - started
        meta["latency_ms"] = round(elapsed * 1000, 1)
        metrics.answer_finished(meta, elapsed)
        try:
            stored = await store_message(
                self.db,
                conversation_id=turn.conversation_id,
                role="assistant",
                text=text,
                reply_to_id=turn.visitor_message.id,
                citations=citations,
                meta=meta,
                message_id=turn.answer_id,
            )
            await turn.emit({"type": "message", "message": message_public(stored.message)})
            await turn.emit(
                {
                    "type": "message_end",
                    "conversation_id": turn.conversation_id,
                    "message_id": stored.message.id,
                    "reply_to": turn.visitor_message.id,
                },
                final=True,
            )
        except Exception:
            log.exception("storing an answer failed")
            metrics.server_error("turn")
            await turn.emit(
                {
                    "type": "error",
                    "code": "internal_error",
                    "message": "The answer could not be stored.",
                    "conversation_id": turn.conversation_id,
                },
                final=True,
            )

    async def _record_failure(
        self, site_id: str, conversation_id: str, responder: str, error: ResponderError
    ) -> None:
        async with self.db.session_scope() as session:
            do_record_responder_failure(
                session,
                site_id=site_id,
                conversation_id=conversation_id,
                responder=responder,
                kind=error.kind,
                message=str(error),
            )

    async def _record_opened(self, site_id: str, responder: str) -> None:
        async with self.db.session_scope() as session:
            do_record_circuit_opened(session, site_id=site_id, responder=responder)

    async def _answer(self, site: SiteView, visitor_id: str, turn: Turn) -> FinalAnswer:
        # A knowledge-first site's answer does not depend on the conversation so far: look in
        # the answer cache before reading the history (most FAQ turns end here).
        knowledge_first = (site.responder or {}).get("kind", "knowledge") == "knowledge"
        cache_key = self._cache_key(site, turn.visitor_message.text) if knowledge_first else None
        cached = await self._cached(turn, cache_key)
        if cached is not None:
            return cached
        earlier: list[Message] = []
        if turn.visitor_message.seq > 1:  # the conversation's first message has no history
            async with self.db.read_scope() as session:
                history = await recent_messages(session, turn.conversation_id, HISTORY_WINDOW)
            earlier = [m for m in history if m.seq < turn.visitor_message.seq]
        upstream: dict[str, Any] = {}
        for message in earlier:
            if message.role == "assistant" and message.meta and "_upstream" in message.meta:
                upstream = dict(message.meta["_upstream"])
        request = AnswerRequest(
            site_id=site.id,
            conversation_id=turn.conversation_id,
            visitor_id=visitor_id,
            question=turn.visitor_message.text,
            history=[HistoryItem(m.role, m.text) for m in earlier],
            locale=site.locale,
            site_name=site.name,
            upstream=upstream,
        )

        async def on_failure(responder: str, error: ResponderError) -> None:
            await self._record_failure(site.id, turn.conversation_id, responder, error)

        async def on_opened(responder: str) -> None:
            await self._record_opened(site.id, responder)

        if not knowledge_first and not any(m.role == "visitor" for m in earlier):
            # Another responder's answer depends on the history: cached only for first questions.
            cache_key = self._cache_key(site, request.question)
            cached = await self._cached(turn, cache_key)
            if cached is not None:
                return cached
        chain = self.responders.build(
            site.responder, on_failure=on_failure, on_circuit_opened=on_opened
        )
        final = await self._stream(turn, chain.answer(request))
        if cache_key is not None:
            await self.cache.put(cache_key, final)
        return final

    async def _cached(self, turn: Turn, cache_key: str | None) -> FinalAnswer | None:
        """The cached answer, already sent to the visitor as one delta; None on a miss."""
        cached = await self.cache.get(cache_key) if cache_key is not None else None
        if cached is not None:
            await self._emit_delta(turn, cached.text)
        return cached

    def _cache_key(self, site: SiteView, question: str) -> str | None:
        """The answer cache's key (None when the site turned the cache off). Callers use it only
        when the answer cannot depend on the conversation so far: the site's first responder is
        the knowledge base, or this is the conversation's first question."""
        if site.options.get("answer_cache") is False:
            return None
        return self.cache.key(
            site_id=site.id,
            responder=site.responder,
            knowledge=site.knowledge_version,
            locale=site.locale,
            question=question,
        )

    async def _emit_delta(self, turn: Turn, text: str) -> None:
        frame = {
            "type": "delta",
            "conversation_id": turn.conversation_id,
            "message_id": turn.answer_id,
            "text": text,
        }
        await turn.emit(frame)
        await self._publish_delta(frame)

    async def _stream(self, turn: Turn, items: AsyncIterator[Delta | FinalAnswer]) -> FinalAnswer:
        async for item in items:
            if isinstance(item, Delta):
                await self._emit_delta(turn, item.text)
            else:
                return item
        raise RuntimeError("the responder chain ended without a final answer")

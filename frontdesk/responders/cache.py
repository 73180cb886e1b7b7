"""The answer cache: the same question to the same site, with the same knowledge, answered once.

The key is the site, a fingerprint of its responder configuration, its knowledge version, the
locale and the question normalised (case, punctuation, spacing). Changing a document or the
responder therefore makes old entries unreachable at once; they expire by TTL. Only complete
answers are kept (never a fallback, an interrupted answer or an "I don't know"). Entries live in
memory (per process, LRU) or in Redis (shared). A site can turn caching off (`answer_cache`).
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from frontdesk.observability import metrics
from frontdesk.responders.base import FinalAnswer

if TYPE_CHECKING:
    from redis.asyncio import Redis

_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)


def normalise_question(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NOT_WORD.sub(" ", folded).split())


def fingerprint(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...


class MemoryCacheStore:
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RedisCacheStore:
    def __init__(self, client: Redis, prefix: str = "fd:ac:") -> None:
        self.client = client
        self.prefix = prefix

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self.client.get(self.prefix + key)
        except Exception:  # a cache that is down is a miss, never an error
            return None
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self.client.set(self.prefix + key, value, px=int(ttl_s * 1000))
        except Exception:
            return


class AnswerCache:
    def __init__(self, store: CacheStore, ttl_s: float = 3600.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(
        *, site_id: str, responder: dict[str, Any], knowledge: str, locale: str, question: str
    ) -> str:
        parts = [site_id, fingerprint(responder), knowledge, locale, normalise_question(question)]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    async def get(self, key: str) -> FinalAnswer | None:
        raw = await self.store.get(key)
        if raw is None:
            self.misses += 1
            metrics.answer_cache_lookup(hit=False)
            return None
        self.hits += 1
        metrics.answer_cache_lookup(hit=True)
        data = orjson.loads(raw)
        meta = {**data["meta"], "cached": True}
        return FinalAnswer(data["text"], data["citations"], data["usage"], meta)

    async def put(self, key: str, answer: FinalAnswer) -> None:
        if not cacheable(answer):
            return
        value = orjson.dumps(
            {
                "text": answer.text,
                "citations": answer.citations,
                "usage": answer.usage,
                "meta": {k: v for k, v in answer.meta.items() if not k.startswith("_")},
            }
        )
        await self.store.set(key, value, self.ttl_s)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def cacheable(answer: FinalAnswer) -> bool:
    meta = answer.meta
    return not (
        meta.get("fallback")
        or meta.get("interrupted")
        or meta.get("failed")
        or meta.get("answered") is False
        or not answer.text.strip()
    )

"""Reading sites, with a small per-process cache for the widget's hot path.

Every widget request needs its site's origins (and a chat turn its knowledge version); reading
them from the database each time would double the cost of a request. Entries live for a few
seconds, so a change made by another process takes effect within that time even if its broker
message is lost; a change made here is applied at once (`invalidate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.db import Database
from frontdesk.errors import AppError
from frontdesk.models import Site
from frontdesk.queries.knowledge import knowledge_version
from frontdesk.security.origins import normalise_origin, origin_allowed


def site_not_found() -> AppError:
    return AppError("site_not_found", "No site has this id.", 404)


@dataclass(frozen=True, slots=True)
class SiteView:
    """An immutable snapshot of what the request path needs of a site."""

    id: str
    name: str
    allowed_origins: tuple[str, ...]
    greeting: str
    locale: str
    responder: dict[str, Any]
    options: dict[str, Any]
    appearance: dict[str, Any]
    limits: dict[str, Any]
    secret_encrypted: str = field(repr=False)
    # The knowledge base's version when this snapshot was read: part of the answer cache's key,
    # so a cached answer is never served after a document changed (a `knowledge.*` event drops
    # the snapshot in every process, through the broker's `config` channel).
    knowledge_version: str = "0"

    @classmethod
    def of(cls, site: Site, knowledge_version: str = "0") -> SiteView:
        return cls(
            id=site.id,
            name=site.name,
            allowed_origins=tuple(site.allowed_origins),
            greeting=site.greeting,
            locale=site.locale,
            responder=dict(site.responder),
            options=dict(site.options),
            appearance=dict(site.appearance),
            limits=dict(site.limits),
            secret_encrypted=site.secret_encrypted,
            knowledge_version=knowledge_version,
        )


async def get_site(session: AsyncSession, site_id: str) -> Site:
    site = await session.get(Site, site_id) if len(site_id) <= 40 else None
    if site is None:
        raise site_not_found()
    return site


class SiteDirectory:
    def __init__(self, db: Database, ttl_s: float = 5.0) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, SiteView]] = {}

    async def get(self, site_id: str) -> SiteView:
        now = time.monotonic()
        entry = self._entries.get(site_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        async with self.db.read_scope() as session:
            site = await get_site(session, site_id)
            view = SiteView.of(site, await knowledge_version(session, site_id))
        self._entries[site_id] = (now + self.ttl_s, view)
        return view

    def invalidate(self, site_id: str | None = None) -> None:
        """Forget one site (or all): the next request reads it again."""
        if site_id is None:
            self._entries.clear()
        else:
            self._entries.pop(site_id, None)


class KnownOrigins:
    """Every origin some site allows, plus FrontDesk's own; re-read every few seconds.

    Used where no site is known yet: CORS preflights and the WebSocket handshake.
    """

    def __init__(self, db: Database, public_url: str, ttl_s: float = 5.0) -> None:
        own = urlsplit(public_url)
        self.own_origin = normalise_origin(f"{own.scheme}://{own.netloc}")
        self.db = db
        self.ttl_s = ttl_s
        self._expires = 0.0
        self._origins: list[str] = []

    async def origins(self) -> list[str]:
        now = time.monotonic()
        if now >= self._expires:
            async with self.db.read_scope() as session:
                rows = (await session.execute(select(Site.allowed_origins))).scalars().all()
            self._origins = [self.own_origin, *sorted({o for row in rows for o in row})]
            self._expires = now + self.ttl_s
        return self._origins

    def invalidate(self) -> None:
        self._expires = 0.0

    async def allows(self, origin: str) -> bool:
        return origin_allowed(origin, await self.origins())

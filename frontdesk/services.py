"""The app's long-lived parts, built once per app and shared by every request.

Routers reach them through `api.deps`; tests build their own app and so their own services.
"""

from __future__ import annotations

from dataclasses import dataclass

from frontdesk.config import Settings
from frontdesk.db import Database
from frontdesk.events.dispatch import EventDispatcher
from frontdesk.queries.sites import SiteDirectory
from frontdesk.realtime.broker import Broker, MemoryBroker
from frontdesk.security.keys import SecretBox
from frontdesk.security.operator_sessions import CsrfTokens
from frontdesk.security.tokens import AccessTokens
from frontdesk.turns import TurnRunner


@dataclass
class Services:
    settings: Settings
    db: Database
    broker: Broker
    sites: SiteDirectory
    box: SecretBox
    tokens: AccessTokens
    csrf: CsrfTokens
    turns: TurnRunner

    @classmethod
    def build(cls, settings: Settings) -> Services:
        broker: Broker = MemoryBroker()
        db = Database(settings, publisher=EventDispatcher(broker))
        return cls(
            settings=settings,
            db=db,
            broker=broker,
            sites=SiteDirectory(db),
            box=SecretBox(settings.server_key),
            tokens=AccessTokens(settings.server_key, settings.access_token_ttl_s),
            csrf=CsrfTokens(settings.server_key),
            turns=TurnRunner(db, broker, timeout_s=settings.answer_timeout_s),
        )

    async def start(self) -> None:
        await self.broker.start()

    async def close(self) -> None:
        await self.turns.drain()
        await self.broker.close()
        await self.db.dispose()

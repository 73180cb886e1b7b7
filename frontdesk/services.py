"""The app's long-lived parts, built once per app and shared by every request.

Routers reach them through `api.deps`; tests build their own app and so their own services.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from frontdesk.config import Settings
from frontdesk.db import Database
from frontdesk.events.cursors import cursors_behind, skip_unwatched
from frontdesk.events.dispatch import EventDispatcher
from frontdesk.events.retention import ActivityRetention
from frontdesk.jobs.clock import Clock
from frontdesk.jobs.worker import Worker
from frontdesk.knowledge.ingestion import INGEST_JOB, KnowledgeIngest
from frontdesk.notifications.delivery import DigestEmail, EmailNotification
from frontdesk.notifications.fanout import CURSOR as NOTIFICATION_CURSOR
from frontdesk.notifications.fanout import DIGEST_JOB, EMAIL_JOB, NotificationFanout
from frontdesk.notifications.fanout import WATCHERS as NOTIFICATION_WATCHERS
from frontdesk.notifications.mailer import Mailer
from frontdesk.queries.sites import KnownOrigins, SiteDirectory
from frontdesk.realtime.broker import RESYNC, Broker, MemoryBroker
from frontdesk.realtime.deadlines import Deadlines
from frontdesk.realtime.hub import ConversationHub
from frontdesk.realtime.limits import ConnectionLimits
from frontdesk.realtime.redis_broker import RedisBroker
from frontdesk.responders.breaker import MemoryBreakerStore, RedisBreakerStore
from frontdesk.responders.cache import AnswerCache, MemoryCacheStore, RedisCacheStore
from frontdesk.responders.registry import ResponderFactory
from frontdesk.responders.transport import warm_tls_context
from frontdesk.security.keys import SecretBox
from frontdesk.security.operator_sessions import CsrfTokens
from frontdesk.security.ratelimit import (
    MemoryRateLimitStore,
    RateLimiter,
    RateLimitStore,
    RedisRateLimitStore,
)
from frontdesk.security.tokens import AccessTokens
from frontdesk.turns import TurnRunner
from frontdesk.webhooks.deliver import Deliverer
from frontdesk.webhooks.fanout import CURSOR as WEBHOOK_CURSOR
from frontdesk.webhooks.fanout import WATCHERS as WEBHOOK_WATCHERS
from frontdesk.webhooks.fanout import fan_out
from frontdesk.webhooks.ssrf import Allowlist, WebhookClient, guarded_client

if TYPE_CHECKING:
    from redis.asyncio import Redis


def connect_redis(url: str) -> Redis:
    """A Redis client (the `redis` extra must be installed when FRONTDESK_REDIS_URL is set)."""
    try:
        from redis.asyncio import Redis
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("FRONTDESK_REDIS_URL is set: pip install 'frontdesk[redis]'") from exc
    return Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)


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
    responders: ResponderFactory
    limiter: RateLimiter
    worker: Worker
    webhook_client: WebhookClient
    known_origins: KnownOrigins
    connection_limits: ConnectionLimits
    hub: ConversationHub
    redis: Redis | None = None
    realtime_stats: Counter[str] = field(default_factory=Counter)
    token_deadlines: Deadlines = field(default_factory=Deadlines)  # when chat sockets expire

    @classmethod
    def build(cls, settings: Settings) -> Services:
        broker: Broker = RedisBroker(settings.redis_url) if settings.redis_url else MemoryBroker()
        db = Database(settings, publisher=EventDispatcher(broker))
        redis = connect_redis(settings.redis_url) if settings.redis_url else None
        store: RateLimitStore = (
            RedisRateLimitStore(redis) if redis is not None else MemoryRateLimitStore()
        )
        box = SecretBox(settings.server_key, settings.previous_server_keys)
        clock = Clock()
        webhook_client = guarded_client(
            Allowlist(settings.webhook_allowed_hosts), timeout_s=settings.webhook_timeout_s
        )

        mailer = Mailer(settings)
        notify = NotificationFanout(db, broker, mailer, clock, settings.public_url)
        retention = ActivityRetention(db, clock, settings.activity_retention_days)

        watchers = {WEBHOOK_CURSOR: WEBHOOK_WATCHERS, NOTIFICATION_CURSOR: NOTIFICATION_WATCHERS}

        async def fan_out_events() -> int:
            # Between job batches: events become deliveries and notifications; old ones go.
            # One read tells which fan-outs have events to look at (most passes: neither).
            behind = await cursors_behind(db, watchers)
            if behind:  # under chat load, most often nobody listens: move those at once
                behind -= await skip_unwatched(db, {key: watchers[key] for key in behind})
            fanned = 0
            if WEBHOOK_CURSOR in behind:
                fanned += await fan_out(db, clock, settings.public_url)
            if NOTIFICATION_CURSOR in behind:
                fanned += await notify()
            return fanned + await retention()

        worker = Worker(
            db,
            broker,
            {
                "webhook.deliver": Deliverer(db, box, webhook_client, clock),
                EMAIL_JOB: EmailNotification(db, mailer),
                DIGEST_JOB: DigestEmail(db, mailer),
                INGEST_JOB: KnowledgeIngest(db),
            },
            clock=clock,
            before_claim=fan_out_events,
            lease_s=settings.job_lease_s,
            poll_s=settings.job_poll_s,
            coalesce_s=settings.job_coalesce_ms / 1000,
        )
        responders = ResponderFactory(
            settings=settings,
            box=box,
            read_scope=db.read_scope,
            breaker_store=RedisBreakerStore(redis) if redis is not None else MemoryBreakerStore(),
        )
        return cls(
            settings=settings,
            db=db,
            broker=broker,
            sites=SiteDirectory(db),
            box=box,
            responders=responders,
            tokens=AccessTokens(
                settings.server_key, settings.access_token_ttl_s, settings.previous_server_keys
            ),
            csrf=CsrfTokens(settings.server_key),
            worker=worker,
            webhook_client=webhook_client,
            turns=TurnRunner(
                db,
                broker,
                responders,
                AnswerCache(
                    RedisCacheStore(redis) if redis is not None else MemoryCacheStore(),
                    ttl_s=settings.answer_cache_ttl_s,
                ),
                timeout_s=settings.answer_timeout_s,
            ),
            limiter=RateLimiter(store),
            known_origins=KnownOrigins(db, settings.public_url),
            connection_limits=ConnectionLimits(
                per_ip=settings.ws_max_per_ip,
                per_site=settings.ws_max_per_site,
                per_process=settings.ws_max_per_process,
            ),
            hub=ConversationHub(settings, db, broker),
            redis=redis,
        )

    async def start(self) -> None:
        await warm_tls_context()
        await self.broker.start()
        ready = asyncio.Event()
        self._config_listener = asyncio.create_task(self._follow_config_changes(ready))
        await ready.wait()
        if self.settings.run_worker:
            await self.worker.start()

    async def _follow_config_changes(self, ready: asyncio.Event) -> None:
        """Drop cached site configuration when any process changes a site."""
        async with self.broker.subscribe("config") as subscription:
            ready.set()
            async for payload in subscription:
                site_id = None
                if payload != RESYNC:
                    site_id = orjson.loads(payload)["event"].get("site_id")
                self.sites.invalidate(site_id)
                self.known_origins.invalidate()

    async def close(self) -> None:
        listener = getattr(self, "_config_listener", None)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        await self.worker.stop()
        await self.turns.drain()
        await self.webhook_client.aclose()
        await self.responders.close()
        await self.hub.close()
        await self.broker.close()
        await self.db.dispose()
        if self.redis is not None:
            await self.redis.aclose()

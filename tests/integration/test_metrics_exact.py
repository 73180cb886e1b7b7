"""Every figure of `GET /api/v1/metrics` equals the database, after a seeded random workload.

The workload goes through the real APIs only: widget sessions, conversations, messages answered by
the responder, leads, offer unlocks, widget analytics and error reports, operator replies and
closes, and webhook deliveries to real loopback receivers (one answers 200 or 503, one 410), in
three phases with a time boundary between each. Then, for every time window built from those
boundaries (open or closed on either side) and for every site and none, each figure of the summary
is compared with a SQL query written here, independently of `frontdesk.queries.metrics`.
FRONTDESK_TEST_SEED changes the workload.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.config import Settings
from frontdesk.main import create_app
from frontdesk.models import utcnow
from frontdesk.models.base import UTCDateTime
from frontdesk.services import Services
from tests.conftest import ORIGIN, PUBLIC_URL, SiteInfo, Visitor, make_site, start_visitor
from tests.fakes import FakeServer
from tests.fakes.receiver import WebhookReceiver

SEED = int(os.environ.get("FRONTDESK_TEST_SEED", "20261122"))
API = "/api/v1"
ACTIONS = [
    {"id": "hours", "label": "Opening hours", "kind": "message", "value": "When are you open?"},
    {"id": "docs", "label": "Docs", "kind": "url", "value": "https://shop.example/docs"},
]
OFFER = {
    "id": "price-list",
    "title": "Get the price list",
    "teaser": "Wholesale prices",
    "fields": ["email"],
    "content": "Prices: 10 EUR per unit.",
}
QUESTIONS = ["When are you open on Sunday?", "Do you ship to Norway?"]
KNOWLEDGE = (
    "# Opening hours\n\nWe are open on Sunday from 10:00 to 16:00, and every other day from 9:00"
    " to 18:00.\n\n# Shipping\n\nWe ship to Norway, Sweden and Denmark within five working days."
)
# What the widget may report as an item id: known ids, an unknown one, a missing one, a number
# and one too long (the last three are counted as "unknown").
ITEM_IDS: list[Any] = ["hours", "docs", "price-list", "nope", None, 7, "x" * 41]


@pytest.fixture
async def quiet_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with the job worker driven by the test and loopback webhooks allowed."""
    quiet = settings.model_copy(update={"run_worker": False, "webhook_allowed_hosts": "127.0.0.1"})
    application = create_app(quiet)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def quiet_services(quiet_app: FastAPI) -> Services:
    services: Services = quiet_app.state.services
    return services


@pytest.fixture
async def http(quiet_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=quiet_app),
        base_url=PUBLIC_URL,
        headers={"Origin": ORIGIN},
    ) as client:
        yield client


async def api_key(services: Services, *scopes: str) -> dict[str, str]:
    async with services.db.session_scope() as session:
        created = await do_create_api_key(session, scopes=list(scopes))
    return {"Authorization": f"Bearer {created.key}"}


async def drain_webhooks(services: Services, rounds: int) -> None:
    for _ in range(rounds):
        if not await services.worker.run_once():
            return


class Workload:
    """One seeded random visit after another, through the widget and REST APIs."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        services: Services,
        sites: list[SiteInfo],
        operator: dict[str, str],
    ) -> None:
        self.http, self.services, self.sites, self.operator = http, services, sites, operator
        self.rng = random.Random(SEED)

    async def phase(self) -> None:
        for _ in range(self.rng.randint(4, 7)):
            await self.visit(self.rng.choice(self.sites))
        await self.services.turns.drain()

    async def visit(self, site: SiteInfo) -> None:
        rng = self.rng
        visitor = await start_visitor(self.http, site.id)
        for _ in range(rng.randint(0, 2)):
            conversation_id = await visitor.conversation()
            for i in range(rng.randint(0, 3)):
                # Some questions recur, so that some answers come from the answer cache.
                question = rng.choice([*QUESTIONS, f"question {i} about {rng.random()}"])
                sent = await visitor.send(conversation_id, question)
                assert sent.status_code == 202, sent.text
            await self.services.turns.drain()
            if rng.random() < 0.3:
                await self.operator_reply(conversation_id)
        if rng.random() < 0.4:
            lead = await self.http.post(
                "/api/widget/v1/leads", headers=visitor.auth, json={"email": "l@shop.example"}
            )
            assert lead.status_code == 201, lead.text
        if rng.random() < 0.3:
            unlocked = await self.http.post(
                f"/api/widget/v1/offers/{OFFER['id']}/unlock",
                headers=visitor.auth,
                json={"email": "u@shop.example"},
            )
            assert unlocked.status_code == 201, unlocked.text
        await self.report(visitor)

    async def operator_reply(self, conversation_id: str) -> None:
        url = f"{API}/conversations/{conversation_id}"
        reply = await self.http.post(
            f"{url}/messages",
            headers=self.operator,
            json={"text": "An operator here.", "client_id": uuid.uuid4().hex},
        )
        assert reply.status_code == 201, reply.text
        if self.rng.random() < 0.5:
            closed = await self.http.post(f"{url}/close", headers=self.operator)
            assert closed.status_code == 200, closed.text

    async def report(self, visitor: Visitor) -> None:
        rng = self.rng
        events = []
        for _ in range(rng.randint(0, 6)):
            type_ = rng.choice(
                [
                    "widget.opened",
                    "quick_action.clicked",
                    "offer.viewed",
                    "offer.clicked",
                    "error.reported",
                    "something.else",
                ]
            )
            data: dict[str, Any] = {}
            item = rng.choice(ITEM_IDS)
            if type_ == "quick_action.clicked" and item is not None:
                data["action_id"] = item
            elif type_.startswith("offer.") and item is not None:
                data["offer_id"] = item
            elif type_ == "error.reported":
                data = {"message": f"TypeError: x is undefined ({rng.randint(1, 3)})"}
            events.append({"type": type_, "data": data})
        if events:
            posted = await self.http.post(
                "/api/widget/v1/events", headers=visitor.auth, json={"events": events}
            )
            assert posted.status_code in (200, 202), posted.text


# --- the figures, counted here -------------------------------------------------------------------

EXPECTED_FIGURES = (
    "conversations",
    "messages",
    "visitors",
    "leads",
    "errors",
    "quick_action_clicks",
    "offer_clicks",
    "offer_views",
    "offer_unlocks",
    "widget_opens",
    "answers",
    "cached_answers",
    "active_visitors",
    "latency_ms",
    "webhook_deliveries",
    "quick_actions",
    "offers",
)


class Expected:
    """The summary's figures for one site (or all) and one window, in SQL of its own."""

    def __init__(
        self,
        session: AsyncSession,
        site_id: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> None:
        self.session, self.site_id, self.since, self.until = session, site_id, since, until
        self.sqlite = session.get_bind().dialect.name == "sqlite"

    def where(self, site_column: str, time_column: str) -> str:
        clauses = []
        if self.site_id is not None:
            clauses.append(f"{site_column} = :site")
        if self.since is not None:
            clauses.append(f"{time_column} >= :since")
        if self.until is not None:
            clauses.append(f"{time_column} < :until")
        return "".join(f" AND {c}" for c in clauses)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        statement = text(sql)
        values: dict[str, Any] = dict(params)
        if self.site_id is not None:
            values["site"] = self.site_id
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None:
                statement = statement.bindparams(bindparam(name, type_=UTCDateTime()))
                values[name] = moment
        return list((await self.session.execute(statement, values)).all())

    async def count(self, sql: str, **params: Any) -> int:
        return int((await self.rows(sql, **params))[0][0])

    def json_text(self, column: str, path: str) -> str:
        """The JSON string at `path` (e.g. 'data.offer_id'), else NULL."""
        if self.sqlite:
            return (
                f"CASE WHEN json_type({column}, '$.{path}') = 'text'"
                f" THEN json_extract({column}, '$.{path}') END"
            )
        steps = path.split(".")
        pointer = "".join(f"->'{s}'" for s in steps[:-1])
        return (
            f"CASE WHEN jsonb_typeof({column}{pointer}->'{steps[-1]}') = 'string'"
            f" THEN {column}{pointer}->>'{steps[-1]}' END"
        )

    def json_number(self, column: str, key: str) -> str:
        if self.sqlite:
            return (
                f"CASE WHEN json_type({column}, '$.{key}') IN ('integer', 'real')"
                f" THEN json_extract({column}, '$.{key}') END"
            )
        return (
            f"CASE WHEN jsonb_typeof({column}->'{key}') = 'number'"
            f" THEN ({column}->>'{key}')::float8 END"
        )

    def json_true(self, column: str, key: str) -> str:
        if self.sqlite:
            return f"json_type({column}, '$.{key}') = 'true'"
        return f"{column}->'{key}' = 'true'::jsonb"

    async def events(self, type_: str) -> int:
        return await self.count(
            "SELECT count(*) FROM events e WHERE e.type = :type" + self.where("e.site_id", "e.at"),
            type=type_,
        )

    async def per_item(self, type_: str, path: str) -> dict[str, int]:
        item = self.json_text("e.data", path)
        rows = await self.rows(
            f"SELECT CASE WHEN length({item}) BETWEEN 1 AND 40 THEN {item} ELSE 'unknown' END,"
            " count(*) FROM events e WHERE e.type = :type"
            + self.where("e.site_id", "e.at")
            + " GROUP BY 1",
            type=type_,
        )
        return {str(name): int(number) for name, number in rows}

    async def latency(self, p: int) -> float | None:
        """Nearest rank: the ceil(p·n/100)-th smallest answer latency, ranked in SQL."""
        ms = self.json_number("m.meta", "latency_ms")
        rows = await self.rows(
            f"""
            WITH answers AS (
                SELECT {ms} AS ms FROM messages m JOIN conversations c ON c.id = m.conversation_id
                WHERE m.role = 'assistant' AND {ms} IS NOT NULL
                {self.where("c.site_id", "m.created_at")}
            ), ranked AS (
                SELECT ms, row_number() OVER (ORDER BY ms) AS rank, count(*) OVER () AS n
                FROM answers
            )
            SELECT ms FROM ranked WHERE rank = (n * :p + 99) / 100
            """,
            p=p,
        )
        return float(rows[0][0]) if rows else None

    async def figures(self) -> dict[str, Any]:
        messages_join = "FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        ms = self.json_number("m.meta", "latency_ms")
        deliveries = {"succeeded": 0, "failed": 0, "pending": 0}
        for status, number in await self.rows(
            "SELECT CASE d.status WHEN 'dead' THEN 'failed' ELSE d.status END, count(*)"
            " FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id"
            " WHERE 1 = 1" + self.where("w.site_id", "d.created_at") + " GROUP BY 1"
        ):
            deliveries[str(status)] += int(number)  # an unknown status fails here
        offers: dict[str, dict[str, int]] = {}
        for type_, path, figure in (
            ("offer.viewed", "data.offer_id", "views"),
            ("offer.clicked", "data.offer_id", "clicks"),
            ("offer.unlocked", "offer_id", "unlocks"),
        ):
            for offer, number in (await self.per_item(type_, path)).items():
                offers.setdefault(offer, {"views": 0, "clicks": 0, "unlocks": 0})[figure] = number
        return {
            "conversations": await self.count(
                "SELECT count(*) FROM conversations c WHERE 1 = 1"
                + self.where("c.site_id", "c.created_at")
            ),
            "messages": await self.count(
                f"SELECT count(*) {messages_join} WHERE 1 = 1"
                + self.where("c.site_id", "m.created_at")
            ),
            "visitors": await self.count(
                "SELECT count(*) FROM visitors v WHERE 1 = 1"
                + self.where("v.site_id", "v.created_at")
            ),
            "leads": await self.count(
                "SELECT count(*) FROM leads l WHERE 1 = 1" + self.where("l.site_id", "l.created_at")
            ),
            "errors": await self.events("error.reported"),
            "quick_action_clicks": await self.events("quick_action.clicked"),
            "offer_clicks": await self.events("offer.clicked"),
            "offer_views": await self.events("offer.viewed"),
            "offer_unlocks": await self.events("offer.unlocked"),
            "widget_opens": await self.events("widget.opened"),
            "answers": await self.count(
                f"SELECT count(*) {messages_join} WHERE m.role = 'assistant' AND {ms} IS NOT NULL"
                + self.where("c.site_id", "m.created_at")
            ),
            "cached_answers": await self.count(
                f"SELECT count(*) {messages_join} WHERE m.role = 'assistant' AND {ms} IS NOT NULL"
                f" AND {self.json_true('m.meta', 'cached')}"
                + self.where("c.site_id", "m.created_at")
            ),
            "active_visitors": await self.count(
                f"SELECT count(DISTINCT c.visitor_id) {messages_join} WHERE m.role = 'visitor'"
                + self.where("c.site_id", "m.created_at")
            ),
            "latency_ms": {"p50": await self.latency(50), "p95": await self.latency(95)},
            "webhook_deliveries": deliveries,
            "quick_actions": await self.per_item("quick_action.clicked", "data.action_id"),
            "offers": offers,
        }


async def test_metrics_equal_the_database(
    http: httpx.AsyncClient, quiet_services: Services
) -> None:
    services = quiet_services
    admin = await api_key(services, "admin")
    sites = [
        await make_site(
            services,
            name=f"Site {i}",
            limits={"visitor_messages": "600/minute", "visitor_burst": 100},
        )
        for i in range(3)
    ]
    for site in sites:
        configured = await http.patch(
            f"{API}/sites/{site.id}",
            headers=admin,
            json={"quick_actions": ACTIONS, "offers": [OFFER]},
        )
        assert configured.status_code == 200, configured.text
        # Something to answer from: complete answers to a recurring question are cached.
        document = await http.post(
            f"{API}/knowledge",
            headers=admin,
            json={"site_id": site.id, "title": "Shop", "text": KNOWLEDGE},
        )
        assert document.status_code in (201, 202), document.text  # 202: indexed by a job
    await drain_webhooks(services, rounds=20)  # runs due jobs, such as indexing
    # From now on the worker's clock stands still: a delivery that failed once stays pending.
    services.worker.clock.freeze()
    flaky = WebhookReceiver(answer=lambda n: (200, {}) if n % 3 else (503, {}))
    gone = WebhookReceiver(answer=lambda _: (410, {}))
    workload = Workload(http, services, sites, await api_key(services, "write"))
    async with FakeServer(flaky) as flaky_url, FakeServer(gone) as gone_url:
        for url, events, site_id in (
            (f"{flaky_url}/all", ["*"], sites[0].id),
            (f"{flaky_url}/leads", ["lead.captured", "conversation.started"], sites[1].id),
            (f"{gone_url}/gone", ["message.created"], sites[1].id),
            (f"{flaky_url}/errors", ["error.reported", "offer.unlocked"], None),
        ):
            created = await http.post(
                f"{API}/webhooks",
                headers=admin,
                json={"url": url, "events": events} | ({"site_id": site_id} if site_id else {}),
            )
            assert created.status_code == 201, created.text
        moments = [utcnow()]
        for rounds in (3, 0, 1):  # some events are never fanned out, some deliveries never tried
            await workload.phase()
            await drain_webhooks(services, rounds)
            await asyncio.sleep(0.01)
            moments.append(utcnow())
            await asyncio.sleep(0.01)

    reader = await api_key(services, "read")
    windows: list[tuple[datetime | None, datetime | None]] = [
        (None, None),
        (moments[0], moments[1]),
        (moments[1], moments[2]),
        (moments[2], None),
        (None, moments[2]),
        (moments[1], None),
        (moments[3], None),  # after everything: all zero
    ]
    checked = 0
    for since, until in windows:
        for site_id in (None, *(s.id for s in sites)):
            params = {
                k: v
                for k, v in (
                    ("since", since.isoformat() if since else None),
                    ("until", until.isoformat() if until else None),
                    ("site_id", site_id),
                )
                if v is not None
            }
            response = await http.get(f"{API}/metrics", headers=reader, params=params)
            assert response.status_code == 200, response.text
            figures = response.json()
            assert set(figures) == set(EXPECTED_FIGURES), "a figure this test does not check"
            async with services.db.read_scope() as session:
                expected = await Expected(session, site_id, since, until).figures()
            for name, value in expected.items():
                assert figures[name] == value, (name, params)
                checked += 1
            if (since, until, site_id) == (None, None, None):
                whole = expected
    # Every figure was compared, and the workload reached each one (none was zero throughout).
    assert checked == len(windows) * 4 * len(EXPECTED_FIGURES)
    for name in EXPECTED_FIGURES:
        if isinstance(whole[name], int):
            assert whole[name] > 0, name
    assert whole["latency_ms"]["p50"] is not None
    assert all(whole["webhook_deliveries"][s] > 0 for s in ("succeeded", "failed", "pending"))
    assert "unknown" in whole["quick_actions"] and len(whole["quick_actions"]) > 1
    assert "unknown" in whole["offers"] and whole["offers"]["price-list"]["unlocks"] > 0

"""Fixtures: a migrated database per test (SQLite and PostgreSQL), the app, and an HTTP client.

`backend` is parametrised over both databases for every test that asks for it. PostgreSQL tests
use a database created for this test run and emptied between tests. When the PostgreSQL service is
missing the tests are skipped locally, and fail when FRONTDESK_TEST_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from frontdesk.actions.sites import do_create_site
from frontdesk.config import Settings, load_settings
from frontdesk.db import Database
from frontdesk.main import create_app
from frontdesk.migrate import upgrade
from frontdesk.models import Base
from frontdesk.services import Services

PG_ADMIN_URL = os.environ.get(
    "FRONTDESK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("FRONTDESK_TEST_REQUIRE_SERVICES") == "1"
ORIGIN = "https://shop.example"
PUBLIC_URL = "http://testserver"


def _service_missing(what: str, error: BaseException) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required in CI but unreachable: {error!r}")
    pytest.skip(f"{what} unavailable: {error!r}")


def _run_in_thread(coro_factory: Any) -> Any:
    """Run async setup from a sync fixture (the test loop may already be running)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro_factory())
        except BaseException as exc:  # re-raised in the caller
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"fd_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"

    async def create() -> None:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        db = Database(load_settings(database_url=url, data_dir=Path("/tmp")))
        await upgrade(db)
        await db.dispose()

    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    try:
        _run_in_thread(create)
    except (OSError, asyncpg.PostgresError) as exc:
        _service_missing("PostgreSQL", exc)
    yield url
    _run_in_thread(drop)


async def _truncate_postgres(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        tables = ", ".join(
            f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name != "system_meta"
        )
        # A server process from the previous test may still be closing its connections:
        # end them, and retry if a lock is still held.
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        for attempt in range(5):
            try:
                await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
                break
            except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError):
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2)
        # Offsets restart at 1, so the webhook fan-out cursor does too (as in a new database).
        await conn.execute(
            "UPDATE system_meta SET value = '0'"
            " WHERE key IN ('webhook_cursor', 'notification_cursor')"
        )
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("postgres_url")) if backend == "postgres" else None


@pytest.fixture
async def settings(database_url: str | None, tmp_path: Path) -> AsyncIterator[Settings]:
    overrides: dict[str, Any] = {
        "data_dir": tmp_path,
        "public_url": PUBLIC_URL,
        "secret_key": "test-secret-key-" + "x" * 32,
    }
    if database_url is not None:
        await _truncate_postgres(database_url)
        overrides["database_url"] = database_url
    settings = load_settings(**overrides)
    db = Database(settings)
    await upgrade(db)
    await db.dispose()
    yield settings


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def services(app: FastAPI) -> Services:
    result: Services = app.state.services
    return result


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=PUBLIC_URL, headers={"Origin": ORIGIN}
    ) as http:
        yield http


class SiteInfo:
    def __init__(self, site_id: str, secret: str) -> None:
        self.id = site_id
        self.secret = secret


async def make_site(services: Services, **kwargs: Any) -> SiteInfo:
    kwargs.setdefault("name", "Shop")
    kwargs.setdefault("origins", [ORIGIN])
    async with services.db.session_scope() as session:
        created = await do_create_site(session, services.box, **kwargs)
    return SiteInfo(created.site.id, created.secret)


@pytest.fixture
async def site(services: Services) -> SiteInfo:
    return await make_site(services)


class Visitor:
    """A visitor's session, with helpers for the calls tests make most."""

    def __init__(self, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        self.client = client
        self.id: str = body["visitor_id"]
        self.access_token: str = body["access_token"]
        self.refresh_token: str = body["refresh_token"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    async def conversation(self) -> str:
        response = await self.client.post("/api/widget/v1/conversations", headers=self.auth)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def send(
        self, conversation_id: str, text: str, client_id: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            f"/api/widget/v1/conversations/{conversation_id}/messages",
            headers=self.auth,
            json={"client_id": client_id or str(uuid.uuid4()), "text": text},
        )


async def start_visitor(client: httpx.AsyncClient, site_id: str, **body: Any) -> Visitor:
    response = await client.post("/api/widget/v1/sessions", json={"site_id": site_id, **body})
    assert response.status_code == 201, response.text
    return Visitor(client, response.json())


@pytest.fixture
async def visitor(client: httpx.AsyncClient, site: SiteInfo) -> Visitor:
    return await start_visitor(client, site.id)


@pytest.fixture
def docs_dir() -> Iterator[Path]:
    yield Path(__file__).parent / "fixtures" / "kb"


@asynccontextmanager
async def serve_uvicorn(config_for_port: Callable[[int], Any]) -> AsyncIterator[str]:
    """A real uvicorn server on a free loopback port, its `uvicorn.Config` made by
    `config_for_port`; yields `host:port` and stops the server after."""
    import socket

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(config_for_port(port))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@asynccontextmanager
async def serving(app: FastAPI, settings: Settings) -> AsyncIterator[str]:
    """The app behind a real uvicorn server on loopback (WebSockets need one)."""
    from frontdesk.server import uvicorn_config

    def config(port: int) -> Any:
        built = uvicorn_config(app, settings, host="127.0.0.1", port=port)
        built.lifespan = "off"  # the app fixture already runs the lifespan
        return built

    async with serve_uvicorn(config) as address:
        yield address


@pytest.fixture
async def live_server(app: FastAPI, settings: Settings) -> AsyncIterator[str]:
    async with serving(app, settings) as address:
        yield address

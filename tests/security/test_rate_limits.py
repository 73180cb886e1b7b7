"""Rate limits through the API: exact bucket behaviour, and one count shared by two processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Visitor, make_site, start_visitor
from tests.integration.test_server_process import FRONTDESK, cli, free_port

REDIS_URL = os.environ.get("FRONTDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def test_burst_of_thirty_gets_twenty_and_retry_after(
    client: httpx.AsyncClient, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    responses = [await visitor.send(conversation_id, f"m{i}") for i in range(30)]
    accepted = [r for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code == 429]
    assert len(accepted) == 20 and len(refused) == 10
    assert all(r.json()["error"]["code"] == "rate_limited" for r in refused)
    # 10/minute: one token every 6 s, less the time the burst itself took (a busy machine)
    assert refused[0].headers["Retry-After"] in ("5", "6")
    history = await client.get(
        f"/api/widget/v1/conversations/{conversation_id}/messages",
        params={"limit": 200},
        headers=visitor.auth,
    )
    texts = [m["text"] for m in history.json()["messages"] if m["role"] == "visitor"]
    assert texts == [f"m{i}" for i in range(20)]  # nothing refused was stored


async def test_site_limits_override_defaults(client: httpx.AsyncClient, services) -> None:  # type: ignore[no-untyped-def]
    site = await make_site(services, limits={"visitor_messages": "1/hour", "visitor_burst": 2})
    visitor = await start_visitor(client, site.id)
    conversation_id = await visitor.conversation()
    codes = [(await visitor.send(conversation_id, "hi")).status_code for _ in range(3)]
    assert codes == [202, 202, 429]


async def test_login_is_limited_per_account(client: httpx.AsyncClient) -> None:
    codes = []
    for _ in range(12):
        response = await client.post(
            "/api/v1/auth/login", json={"email": "who@shop.example", "password": "x"}
        )
        codes.append(response.status_code)
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


@pytest.fixture
def two_servers(
    database_url: str | None, tmp_path: Path, site_for_processes: tuple[dict[str, str], str]
) -> Iterator[list[str]]:
    env, _ = site_for_processes
    processes, urls = [], []
    try:
        for _ in range(2):
            port = free_port()
            process_env = {**env, "FRONTDESK_PORT": str(port)}
            processes.append(
                subprocess.Popen(
                    [FRONTDESK, "serve"],
                    env=process_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        for url in urls:
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("servers did not start")
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


@pytest.fixture
def site_for_processes(database_url: str | None, tmp_path: Path) -> tuple[dict[str, str], str]:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        if os.environ.get("FRONTDESK_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required in CI: {exc!r}")
        pytest.skip(f"Redis unavailable: {exc!r}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATA_DIR=str(tmp_path / "data"),
        FRONTDESK_SECRET_KEY="shared-secret-for-both-processes-0123456789",
        FRONTDESK_REDIS_URL=REDIS_URL,
        FRONTDESK_LOG_LEVEL="warning",
        FRONTDESK_PUBLIC_URL="http://127.0.0.1:1",
    )
    if database_url:
        from tests.conftest import _run_in_thread, _truncate_postgres

        _run_in_thread(lambda: _truncate_postgres(database_url))
        env["FRONTDESK_DATABASE_URL"] = database_url
    created = cli(
        env, "site", "create", "--name", "Shop", "--origin", "https://shop.example", "--json"
    )
    assert created.returncode == 0, created.stderr
    import json

    return env, json.loads(created.stdout)["site_id"]


def test_limit_is_shared_by_two_processes_through_redis(
    two_servers: list[str], site_for_processes: tuple[dict[str, str], str]
) -> None:
    _, site_id = site_for_processes
    origin = {"Origin": "https://shop.example"}

    async def run() -> list[int]:
        async with httpx.AsyncClient(headers=origin, timeout=10) as http:
            session = await http.post(
                f"{two_servers[0]}/api/widget/v1/sessions", json={"site_id": site_id}
            )
            assert session.status_code == 201, session.text
            auth = {"Authorization": f"Bearer {session.json()['access_token']}"}
            conversation = await http.post(
                f"{two_servers[1]}/api/widget/v1/conversations", headers=auth
            )
            conversation_id = conversation.json()["id"]

            async def send(url: str, i: int) -> int:
                response = await http.post(
                    f"{url}/api/widget/v1/conversations/{conversation_id}/messages",
                    headers=auth,
                    json={"client_id": f"c{i}", "text": f"m{i}"},
                )
                return response.status_code

            return list(await asyncio.gather(*(send(two_servers[i % 2], i) for i in range(30))))

    codes = asyncio.run(run())
    assert codes.count(202) == 20 and codes.count(429) == 10

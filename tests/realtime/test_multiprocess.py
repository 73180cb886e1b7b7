"""Two app processes sharing PostgreSQL and Redis: cross-process delivery, a Redis outage with
repair from the database, and a killed process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ORIGIN
from tests.processes import base_env, cli, free_port, start_server
from tests.realtime.wsclient import Socket, chat_socket

pytestmark = [pytest.mark.server, pytest.mark.parametrize("backend", ["postgres"], indirect=True)]


class TcpProxy:
    """A loopback TCP proxy in front of Redis that can be cut and restored."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self.pipes.update({client_w, up_w})
        await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.pipes):
            writer.transport.abort()
        self.pipes.clear()
        await self.server.wait_closed()


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    import redis.asyncio

    client = redis.asyncio.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        if os.environ.get("FRONTDESK_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required in CI: {exc!r}")
        pytest.skip(f"Redis unavailable: {exc!r}")
    finally:
        await client.aclose()
    proxy = TcpProxy(6379)
    await proxy.start()
    yield proxy
    with contextlib.suppress(Exception):
        await proxy.cut()


async def wait_ready(url: str, status: int, timeout_s: float = 10) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if (await http.get(f"{url}/ready")).status_code == status:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url}/ready never answered {status}")


async def collect_until(socket: Socket, last_seq: int, timeout: float = 10) -> list[int]:
    seqs: list[int] = []
    while not seqs or seqs[-1] < last_seq:
        frame = await socket.recv(timeout)
        if frame["type"] == "message":
            seqs.append(frame["message"]["seq"])
        elif frame["type"] == "joined":
            seqs.extend(m["seq"] for m in frame["messages"])
    return seqs


async def test_fan_out_outage_repair_and_failover(
    redis_proxy: TcpProxy, database_url: str, tmp_path: Path
) -> None:
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(database_url)
    env = base_env(
        tmp_path,
        database_url,
        FRONTDESK_REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0",
    )
    created = cli(env, "site", "create", "--name", "Shop", "--origin", ORIGIN, "--json")
    assert created.returncode == 0, created.stderr
    site_id = json.loads(created.stdout)["site_id"]
    server_a, server_b = await asyncio.gather(
        asyncio.to_thread(start_server, env), asyncio.to_thread(start_server, env)
    )
    try:
        async with httpx.AsyncClient(headers={"Origin": ORIGIN}, timeout=10) as http:
            session = (
                await http.post(f"{server_a.url}/api/widget/v1/sessions", json={"site_id": site_id})
            ).json()
            auth = {"Authorization": f"Bearer {session['access_token']}"}
            conversation_id = (
                await http.post(f"{server_a.url}/api/widget/v1/conversations", headers=auth)
            ).json()["id"]

            async def send_via(url: str, text: str) -> None:
                response = await http.post(
                    f"{url}/api/widget/v1/conversations/{conversation_id}/messages",
                    headers=auth,
                    json={"client_id": text, "text": text},
                )
                assert response.status_code == 202, response.text

            on_b = await chat_socket(server_b.host, session["access_token"])
            await on_b.send({"type": "join", "conversation_id": conversation_id, "after_seq": 0})
            assert (await on_b.recv())["type"] == "joined"

            # 1. sent through A, seen live on B (question and the answer A produced)
            await send_via(server_a.url, "one")
            assert await collect_until(on_b, 2) == [1, 2]

            # 2. Redis goes away: both processes keep serving, /ready says so
            await redis_proxy.cut()
            await wait_ready(server_a.url, 503)
            on_a = await chat_socket(server_a.host, session["access_token"])
            await on_a.send({"type": "join", "conversation_id": conversation_id, "after_seq": 2})
            assert (await on_a.recv())["type"] == "joined"
            await send_via(server_a.url, "two")
            assert await collect_until(on_a, 4) == [3, 4]  # A's own clients still served live

            # 3. Redis returns: fan-out resumes and B repairs the gap from the database
            await redis_proxy.start()
            await wait_ready(server_b.url, 200)
            assert await collect_until(on_b, 4) == [3, 4]
            await send_via(server_a.url, "three")
            assert await collect_until(on_b, 6) == [5, 6]

            # 4. A is killed: its client reconnects to B with its last seq and misses nothing
            await on_a.close()
            server_a.kill()
            await send_via(server_b.url, "four")
            again = await chat_socket(server_b.host, session["access_token"])
            await again.send({"type": "join", "conversation_id": conversation_id, "after_seq": 4})
            assert await collect_until(again, 8) == [5, 6, 7, 8]
            await asyncio.gather(on_b.close(), again.close())
    finally:
        server_a.stop()
        server_b.stop()


async def test_site_changes_reach_every_process_at_once(
    redis_proxy: TcpProxy, database_url: str, tmp_path: Path
) -> None:
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(database_url)
    env = base_env(tmp_path, database_url, FRONTDESK_REDIS_URL="redis://127.0.0.1:6379/0")
    site_id = json.loads(
        cli(env, "site", "create", "--name", "S", "--origin", ORIGIN, "--json").stdout
    )["site_id"]
    key = json.loads(cli(env, "apikey", "create", "--scopes", "admin", "--json").stdout)["key"]
    server_a, server_b = await asyncio.gather(
        asyncio.to_thread(start_server, env), asyncio.to_thread(start_server, env)
    )
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            new_origin = "https://new.example"

            async def session_on_b(origin: str) -> int:
                response = await http.post(
                    f"{server_b.url}/api/widget/v1/sessions",
                    json={"site_id": site_id},
                    headers={"Origin": origin},
                )
                return response.status_code

            assert await session_on_b(ORIGIN) == 201  # B has the site cached now
            assert await session_on_b(new_origin) == 403
            patched = await http.patch(
                f"{server_a.url}/api/v1/sites/{site_id}",
                headers={"Authorization": f"Bearer {key}"},
                json={"allowed_origins": [new_origin]},
            )
            assert patched.status_code == 200
            await asyncio.sleep(0.3)  # far less than the cache's lifetime
            assert await session_on_b(new_origin) == 201
            assert await session_on_b(ORIGIN) == 403
    finally:
        server_a.stop()
        server_b.stop()

"""The job queue under failure: competing workers, a worker killed mid-delivery, and database
connections cut under a running worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select

from frontdesk.config import load_settings
from frontdesk.db import Database
from frontdesk.jobs import queue
from frontdesk.jobs.clock import Clock
from frontdesk.models import Job
from tests.conftest import ORIGIN
from tests.fakes import FakeServer
from tests.fakes.receiver import WebhookReceiver
from tests.processes import FRONTDESK, base_env, cli, start_server

POSTGRES = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


@POSTGRES
async def test_competing_workers_never_share_a_job(database_url: str, tmp_path: Path) -> None:
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(database_url)
    db = Database(load_settings(database_url=database_url, data_dir=tmp_path))
    now = Clock().now()
    async with db.session_scope() as session:
        for i in range(200):
            queue.enqueue(session, "noop", {"i": i}, run_at=now)

    async def take(worker: str) -> list[int]:
        taken: list[int] = []
        while True:
            async with db.session_scope() as session:
                jobs = await queue.claim(session, worker=worker, now=now, lease_s=60, limit=7)
            if not jobs:
                return taken
            taken.extend(j.id for j in jobs)

    results = await asyncio.gather(*(take(f"w{i}") for i in range(4)))
    everything = [job for result in results for job in result]
    assert len(everything) == 200 and len(set(everything)) == 200
    assert all(results)  # every worker got some
    await db.dispose()


@POSTGRES
async def test_killed_worker_delivery_is_redelivered_with_the_same_id(
    database_url: str, tmp_path: Path
) -> None:
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(database_url)
    receiver = WebhookReceiver(delay_s=30)  # the first delivery hangs: the worker dies meanwhile
    async with FakeServer(receiver) as receiver_url:
        env = base_env(
            tmp_path,
            database_url,
            FRONTDESK_RUN_WORKER="false",
            FRONTDESK_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
            FRONTDESK_JOB_LEASE_S="2",
            FRONTDESK_JOB_POLL_S="0.2",
        )
        site_id = json.loads(
            cli(env, "site", "create", "--name", "S", "--origin", ORIGIN, "--json").stdout
        )["site_id"]
        key = json.loads(cli(env, "apikey", "create", "--scopes", "admin", "--json").stdout)["key"]
        server = await asyncio.to_thread(start_server, env)
        worker_env = {**env, "FRONTDESK_RUN_WORKER": "true"}
        first = subprocess.Popen(
            [FRONTDESK, "worker"],
            env=worker_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        second = None
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                auth = {"Authorization": f"Bearer {key}"}
                created = await http.post(
                    "/api/v1/webhooks",
                    headers=auth,
                    json={"url": receiver_url, "events": ["lead.captured"], "site_id": site_id},
                )
                assert created.status_code == 201, created.text
                session = (
                    await http.post(
                        "/api/widget/v1/sessions",
                        headers={"Origin": ORIGIN},
                        json={"site_id": site_id},
                    )
                ).json()
                lead = await http.post(
                    "/api/widget/v1/leads",
                    headers={
                        "Origin": ORIGIN,
                        "Authorization": f"Bearer {session['access_token']}",
                    },
                    json={"email": "k@shop.example"},
                )
                assert lead.status_code == 201
                for _ in range(200):
                    if receiver.received:
                        break
                    await asyncio.sleep(0.05)
                assert len(receiver.received) == 1
                first.kill()  # SIGKILL mid-delivery: no cleanup, the lease just runs out
                first.wait(timeout=10)
                receiver.delay_s = 0
                second = subprocess.Popen(
                    [FRONTDESK, "worker"],
                    env=worker_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(300):
                    if len(receiver.received) >= 2:
                        break
                    await asyncio.sleep(0.05)
                assert len(receiver.received) == 2
                ids = [r.headers["webhook-id"] for r in receiver.received]
                assert ids[0] == ids[1]  # a duplicate the receiver can recognise
                endpoint_id = created.json()["id"]
                for _ in range(100):
                    log = (
                        await http.get(f"/api/v1/webhooks/{endpoint_id}/deliveries", headers=auth)
                    ).json()["deliveries"]
                    if log and log[0]["status"] == "succeeded":
                        break
                    await asyncio.sleep(0.05)
                assert log[0]["status"] == "succeeded"
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(timeout=10)
            server.stop()


@POSTGRES
async def test_worker_survives_lost_database_connections(database_url: str, tmp_path: Path) -> None:
    """The database going away under a running worker (its connections killed, as in a restart)."""
    from frontdesk.jobs.worker import Worker
    from frontdesk.realtime.broker import MemoryBroker
    from tests.conftest import _truncate_postgres

    await _truncate_postgres(database_url)
    db = Database(load_settings(database_url=database_url, data_dir=tmp_path))
    done: list[int] = []

    async def handler(payload: dict, _: object) -> None:  # type: ignore[type-arg]
        done.append(payload["i"])

    worker = Worker(db, MemoryBroker(), {"count": handler}, poll_s=0.1)
    await worker.start()
    try:
        now = Clock().now()
        async with db.session_scope() as session:
            for i in range(5):
                queue.enqueue(session, "count", {"i": i}, run_at=now)
        worker.wake()
        for _ in range(100):
            if len(done) == 5:
                break
            await asyncio.sleep(0.05)
        name = database_url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/test")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await admin.close()
        async with db.session_scope() as session:
            for i in range(5, 10):
                queue.enqueue(session, "count", {"i": i}, run_at=Clock().now())
        worker.wake()
        for _ in range(200):
            if len(done) == 10:
                break
            await asyncio.sleep(0.05)
        assert sorted(done) == list(range(10))  # each once
        for _ in range(100):  # the last handlers may still be committing their result
            async with db.read_scope() as session:
                states = (
                    await session.execute(select(Job.status, func.count()).group_by(Job.status))
                ).all()
            if dict(states) == {"succeeded": 10}:
                break
            await asyncio.sleep(0.05)
        assert dict(states) == {"succeeded": 10}
    finally:
        await worker.stop()
        await db.dispose()

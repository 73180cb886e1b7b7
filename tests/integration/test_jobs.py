"""The job queue under failure: competing workers, a worker killed mid-delivery, database
connections cut under a running worker, and PostgreSQL restarted during deliveries."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.config import load_settings
from frontdesk.db import Database
from frontdesk.jobs import queue
from frontdesk.jobs.clock import Clock
from frontdesk.main import create_app
from frontdesk.migrate import upgrade
from frontdesk.models import Job, WebhookDelivery
from tests.conftest import ORIGIN, PUBLIC_URL, make_site, start_visitor
from tests.fakes import FakeServer
from tests.fakes.receiver import WebhookReceiver
from tests.pg_instance import private_postgres
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


@pytest.mark.postgres
async def test_worker_recovers_from_a_postgres_restart(tmp_path: Path) -> None:
    """PostgreSQL stopped and started again while deliveries are in flight, on a private server
    (the machine's PostgreSQL is shared and not ours to restart). The worker keeps running and
    every delivery arrives; a repeat is recognisable by its webhook-id."""
    with private_postgres() as pg:
        admin = await asyncpg.connect(pg.admin_url)
        await admin.execute("CREATE DATABASE frontdesk")
        await admin.close()
        settings = load_settings(
            database_url=pg.url("frontdesk"),
            data_dir=tmp_path,
            public_url=PUBLIC_URL,
            secret_key="restart-test-secret-" + "x" * 32,
            webhook_allowed_hosts="127.0.0.1",
            job_poll_s=0.2,
            job_lease_s=10,
        )
        db = Database(settings)
        await upgrade(db)
        await db.dispose()
        app = create_app(settings)
        receiver = WebhookReceiver(delay_s=0.2)  # ~80 deliveries/s: the restart lands mid-way
        async with app.router.lifespan_context(app), FakeServer(receiver) as receiver_url:
            services = app.state.services
            site = await make_site(services)
            async with services.db.session_scope() as session:
                key = (await do_create_api_key(session, scopes=["admin"])).key
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url=PUBLIC_URL, headers={"Origin": ORIGIN}
            ) as http:
                created = await http.post(
                    "/api/v1/webhooks",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"url": receiver_url, "events": ["widget.event"], "site_id": site.id},
                )
                assert created.status_code == 201, created.text
                visitor = await start_visitor(http, site.id)

                async def post_events(start: int) -> None:
                    events = [
                        {"type": "restart.probe", "data": {"n": start + i}} for i in range(50)
                    ]
                    response = await http.post(
                        "/api/widget/v1/events", headers=visitor.auth, json={"events": events}
                    )
                    assert response.status_code == 202, response.text

                for start in range(0, 200, 50):
                    await post_events(start)
                for _ in range(200):
                    if len(receiver.received) >= 40:
                        break
                    await asyncio.sleep(0.05)
                ids_before = {r.headers["webhook-id"] for r in receiver.received}
                assert 40 <= len(ids_before) < 200  # deliveries are under way

                await asyncio.to_thread(pg.stop, "fast")  # the worker meets a dead database
                await asyncio.sleep(2)
                assert services.worker.alive
                await asyncio.to_thread(pg.start)

                for start in range(200, 300, 50):
                    await post_events(start)
                delivered: set[str] = set()
                for _ in range(400):  # until every delivery arrived and its result is stored
                    delivered = {r.headers["webhook-id"] for r in receiver.received}
                    async with services.db.read_scope() as session:
                        rows = (
                            await session.execute(
                                select(WebhookDelivery.id, WebhookDelivery.status)
                            )
                        ).all()
                        jobs = dict(
                            (
                                await session.execute(
                                    select(Job.status, func.count()).group_by(Job.status)
                                )
                            ).all()
                        )
                    if len(delivered) >= 300 and jobs == {"succeeded": 300}:
                        break
                    await asyncio.sleep(0.05)
            worker_task = services.worker._task
            assert services.worker.alive and worker_task is not None and not worker_task.done()
        assert len(rows) == 300
        assert delivered == {delivery_id for delivery_id, _ in rows}  # every one arrived
        assert {status for _, status in rows} == {"succeeded"}
        assert jobs == {"succeeded": 300}  # none lost, none left running, none done twice
        bodies: dict[str, bytes] = {}
        for received in receiver.received:  # a repeat is the same delivery: same id, same body
            assert bodies.setdefault(received.headers["webhook-id"], received.body) == received.body
        numbers = sorted(json.loads(b)["data"]["data"]["n"] for b in bodies.values())
        assert numbers == list(range(300))

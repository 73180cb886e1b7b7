"""Knowledge ingestion as background work, on SQLite and PostgreSQL: an upload is accepted (202),
indexed by the `knowledge.ingest` job with `job.progress` events, and answered from; duplicates
and unreadable files are reported; bad uploads are refused with the contract's codes; the CLI
shows progress and a summary; a worker killed mid-ingestion leaves the job to another worker,
which indexes the document once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.actions.ingestions import check_upload, do_queue_ingestion
from frontdesk.config import Settings
from frontdesk.db import Database
from frontdesk.jobs import queue
from frontdesk.jobs.clock import Clock
from frontdesk.jobs.worker import Worker, WorkerContext
from frontdesk.knowledge import ingestion as ingestion_module
from frontdesk.knowledge.embed import default_embedder
from frontdesk.knowledge.ingestion import KnowledgeIngest, LeaseLost
from frontdesk.models import EventRecord, Job, KnowledgeChunk, KnowledgeDocument, utcnow
from frontdesk.models.knowledge import KnowledgeIngestion
from frontdesk.realtime.broker import MemoryBroker
from frontdesk.services import Services
from tests.conftest import PUBLIC_URL, SiteInfo, start_visitor
from tests.pdfs import make_pdf
from tests.sse import parse_sse

API = "/api/v1/knowledge"
FRONTDESK = str(Path(sys.executable).parent / "frontdesk")
RETURNS = (
    "# Returns\n\n## Sending an item back\n\n"
    "You can return any item within thirty days of delivery for a full refund.\n"
)


async def admin_key(services: Services) -> dict[str, str]:
    async with services.db.session_scope() as session:
        created = await do_create_api_key(session, scopes=["admin"])
    return {"Authorization": f"Bearer {created.key}"}


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    site_id: str,
    name: str,
    body: bytes,
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    return await client.post(
        f"{API}/files",
        params={"site_id": site_id, "name": name},
        headers={**headers, "Content-Type": content_type},
        content=body,
    )


async def finished(
    client: httpx.AsyncClient, headers: dict[str, str], accepted: httpx.Response
) -> dict[str, Any]:
    """The ingestion once it has ended (the worker is woken by the upload's commit)."""
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"].removeprefix(PUBLIC_URL)
    assert location == f"{API}/ingestions/{accepted.json()['id']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = (await client.get(location, headers=headers)).json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"ingestion still {body['status']}: {body}")


async def progress_events(services: Services, ingestion_id: str) -> list[dict[str, Any]]:
    async with services.db.read_scope() as session:
        rows = (
            await session.execute(
                select(EventRecord)
                .where(EventRecord.type == "job.progress")
                .order_by(EventRecord.offset)
            )
        ).scalars()
        return [r.data for r in rows if r.data.get("ingestion_id") == ingestion_id]


async def ask(client: httpx.AsyncClient, site_id: str, question: str) -> dict[str, Any]:
    visitor = await start_visitor(client, site_id)
    conversation_id = await visitor.conversation()
    response = await client.post(
        f"/api/widget/v1/conversations/{conversation_id}/messages",
        headers={**visitor.auth, "Accept": "text/event-stream"},
        json={"client_id": "q", "text": question},
    )
    message: dict[str, Any] = [e for n, e in parse_sse(response.text) if n == "message"][-1][
        "message"
    ]
    return message


async def test_an_upload_is_indexed_in_the_background_and_answered_from(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    admin = await admin_key(services)
    started = time.monotonic()
    accepted = await upload(client, admin, site.id, "help/returns.md", RETURNS.encode())
    queued = accepted.json()
    assert queued["status"] == "queued" and queued["document_id"] is None
    assert queued["progress"] == {"stage": "queued", "done": 0, "total": 0}
    assert queued["content_type"] == "text/markdown" and queued["source"] == "help/returns.md"
    done = await finished(client, admin, accepted)
    took = time.monotonic() - started
    print(f"upload to indexed: {took * 1000:.0f} ms")
    assert took < 10  # well under a second on an idle machine; this one is shared
    assert done["status"] == "done" and done["outcome"] == "added", done
    assert done["chunk_count"] == 1 and done["title"] == "Returns" and done["error"] is None
    assert done["progress"] == {"stage": "done", "done": 1, "total": 1}

    events = await progress_events(services, queued["id"])
    assert [e["stage"] for e in events] == ["queued", "extracting", "done"]
    assert {e["job"] for e in events} == {events[0]["job"]} and events[0]["job"] is not None
    assert events[-1]["document_id"] == done["document_id"]
    async with services.db.read_scope() as session:
        indexed = (
            await session.execute(
                select(EventRecord).where(EventRecord.type == "knowledge.document_indexed")
            )
        ).scalar_one()
        job = await session.get(Job, events[0]["job"])
    assert indexed.data["document_id"] == done["document_id"]
    assert job is not None and job.status == "succeeded" and job.attempts == 1

    listed = await client.get(API, params={"site_id": site.id}, headers=admin)
    assert [d["id"] for d in listed.json()["documents"]] == [done["document_id"]]
    recent = await client.get(f"{API}/ingestions", params={"site_id": site.id}, headers=admin)
    assert [i["id"] for i in recent.json()["ingestions"]] == [queued["id"]]

    answer = await ask(client, site.id, "Can I return an item?")
    assert "thirty days" in answer["text"]
    assert answer["citations"][0]["title"] == "Returns › Sending an item back"


async def test_a_large_document_reports_progress_in_steps(
    client: httpx.AsyncClient,
    services: Services,
    site: SiteInfo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every 5 % of the work, without the half-second floor (this machine is fast or slow at
    # random): what the throttle allows is then exactly what is seen.
    monkeypatch.setattr(ingestion_module, "PROGRESS_INTERVAL_S", 0.0)
    admin = await admin_key(services)
    sections = [f"## Topic {i}\n\nFact number {i} is about item {i * 7}." for i in range(1500)]
    body = ("# Handbook\n\n" + "\n\n".join(sections)).encode()
    accepted = await upload(client, admin, site.id, "handbook.md", body, "text/markdown")
    done = await finished(client, admin, accepted)
    assert done["status"] == "done" and done["chunk_count"] == 1500

    events = await progress_events(services, done["id"])
    stages = [e["stage"] for e in events]
    assert stages[:2] == ["queued", "extracting"] and stages[-1] == "done"
    embedding = [e for e in events if e["stage"] == "embedding"]
    assert 3 <= len(embedding) <= 20, embedding  # steps of 5 % at least, never one per chunk
    assert all(e["total"] == 1500 for e in embedding)
    steps = [e["done"] for e in embedding]
    assert steps == sorted(set(steps)) and steps[-1] < 1500
    assert all(b - a >= 1500 * 0.05 for a, b in zip([0, *steps], steps, strict=False))
    assert events[-1]["done"] == events[-1]["total"] == 1500


async def test_duplicates_are_reported_with_the_document_that_has_the_text(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    admin = await admin_key(services)
    first = await finished(
        client, admin, await upload(client, admin, site.id, "a.md", b"# A\n\nSame text.")
    )
    assert first["status"] == "done"
    copy = await finished(
        client, admin, await upload(client, admin, site.id, "b.md", b"# A\n\nSame text.")
    )
    assert copy["status"] == "duplicate" and copy["outcome"] == "duplicate"
    assert copy["document_id"] == first["document_id"] and copy["chunk_count"] == 1
    again = await finished(
        client, admin, await upload(client, admin, site.id, "a.md", b"# A\n\nSame text.")
    )
    assert again["status"] == "duplicate" and again["outcome"] == "unchanged"
    assert again["document_id"] == first["document_id"]
    events = await progress_events(services, copy["id"])
    assert events[-1]["stage"] == "duplicate"
    assert events[-1]["document_id"] == first["document_id"]
    async with services.db.read_scope() as session:
        documents = await session.scalar(select(func.count()).select_from(KnowledgeDocument))
        chunks = await session.scalar(select(func.count()).select_from(KnowledgeChunk))
    assert documents == 1 and chunks == 1


async def test_a_changed_upload_reindexes_the_document_and_the_answer_follows(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    admin = await admin_key(services)
    nine = b"# Opening hours\n\nThe shop opens at nine in the morning."
    first = await finished(client, admin, await upload(client, admin, site.id, "hours.md", nine))
    assert "nine" in (await ask(client, site.id, "When does the shop open?"))["text"]
    cached = await ask(client, site.id, "When does the shop open?")
    assert cached["meta"]["cached"] is True

    ten = nine.replace(b"nine", b"ten")
    second = await finished(client, admin, await upload(client, admin, site.id, "hours.md", ten))
    assert second["status"] == "done" and second["outcome"] == "updated"
    assert second["document_id"] == first["document_id"]
    answer = await ask(client, site.id, "When does the shop open?")
    assert "ten" in answer["text"] and answer["meta"].get("cached") is None


async def test_bad_uploads_are_refused_with_the_contract_codes(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    admin = await admin_key(services)

    async def refused(response: httpx.Response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code

    word = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    await refused(
        await upload(client, admin, site.id, "notes.docx", b"PK..", word),
        415,
        "unsupported_media_type",
    )
    await refused(
        await upload(client, admin, site.id, "empty.md", b"  \n\n "), 422, "invalid_request"
    )
    await refused(
        await upload(client, admin, site.id, "fake.pdf", b"hello, not a pdf"),
        422,
        "invalid_request",
    )
    await refused(
        await upload(client, admin, site.id, "bin.txt", b"\x00\x01\x02binary"),
        422,
        "invalid_request",
    )
    too_big = b"word " * (1024 * 1024 + 1)  # just over 5 MiB of text
    await refused(
        await upload(client, admin, site.id, "big.txt", too_big), 413, "payload_too_large"
    )
    await refused(
        await upload(client, admin, "site_nope", "a.md", b"# A\n\nx"), 404, "site_not_found"
    )
    blank = {"site_id": site.id, "title": "Blank", "text": "   "}
    await refused(await client.post(API, headers=admin, json=blank), 422, "invalid_request")
    missing = await client.get(f"{API}/ingestions/ing_nope", headers=admin)
    await refused(missing, 404, "not_found")
    async with services.db.read_scope() as session:
        assert await session.scalar(select(func.count()).select_from(Job)) == 0


async def test_unreadable_files_end_failed_with_the_reason(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    admin = await admin_key(services)
    broken = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage"
    blank_pdf = make_pdf([[]])
    no_main_text = b"<html><head><script>var x = 1;</script></head><body></body></html>"
    cases = [
        ("broken.pdf", broken, "not a readable PDF"),
        ("scan.pdf", blank_pdf, "no extractable text"),
        ("page.html", no_main_text, "no text to index"),
    ]
    for name, body, reason in cases:
        ended = await finished(client, admin, await upload(client, admin, site.id, name, body))
        assert ended["status"] == "failed" and reason in ended["error"], ended
        assert ended["document_id"] is None
        events = await progress_events(services, ended["id"])
        assert events[-1]["stage"] == "failed" and reason in events[-1]["error"]
    async with services.db.read_scope() as session:
        jobs = (await session.execute(select(Job.status, Job.attempts))).all()
    assert jobs == [("succeeded", 1)] * 3  # refused for good at once: no retry, no dead job


async def test_a_worker_that_lost_its_claim_changes_nothing(settings: Settings) -> None:
    """A worker that stalled mid-run (here: inside the embedding) past its lease must not index
    once another worker has taken the job over and indexed the document."""
    db = Database(settings)
    try:
        site_id = await make_site_in(db, settings)
        accepted = check_upload(b"# Hours\n\nWe open at nine.", name="hours.md")
        async with db.session_scope() as session:
            row, _ = await do_queue_ingestion(
                session, site_id=site_id, upload=accepted, now=utcnow()
            )
        stalled, resume = threading.Event(), threading.Event()

        class StallingEmbedder:
            dim = default_embedder().dim

            def embed(self, texts: Any) -> Any:
                stalled.set()
                resume.wait(30)
                return default_embedder().embed(texts)

        slow = Worker(db, MemoryBroker(), {}, lease_s=30)
        later = Worker(db, MemoryBroker(), {}, lease_s=30, clock=LaterClock(seconds=60))
        async with db.session_scope() as session:
            [job] = await queue.claim(session, worker=slow.id, now=utcnow(), lease_s=30, limit=1)
        first = KnowledgeIngest(db, embedder=StallingEmbedder())
        run = asyncio.create_task(first(job.payload, WorkerContext(slow, job)))
        while not stalled.is_set():
            await asyncio.sleep(0.01)
        # For the other worker the first one's lease has run out: it takes the job and indexes.
        async with db.session_scope() as session:
            [again] = await queue.claim(
                session, worker=later.id, now=later.clock.now(), lease_s=30, limit=1
            )
        await KnowledgeIngest(db)(again.payload, WorkerContext(later, again))
        resume.set()
        with pytest.raises(LeaseLost):
            await run
        async with db.read_scope() as session:
            chunks = await session.scalar(select(func.count()).select_from(KnowledgeChunk))
            documents = await session.scalar(select(func.count()).select_from(KnowledgeDocument))
            job_row = await session.get(Job, job.id)
            events = (await session.execute(select(EventRecord.data))).scalars().all()
        assert chunks == 1 and documents == 1
        assert job_row is not None and job_row.status == "succeeded" and job_row.attempts == 2
        assert job_row.locked_by == later.id
        stages = [d["stage"] for d in events if d.get("ingestion_id") == row.id]
        assert stages == ["queued", "extracting", "extracting", "done"]
    finally:
        resume.set()
        await db.dispose()


class LaterClock(Clock):
    """A worker whose clock runs ahead: the other worker's lease has run out for it."""

    def __init__(self, seconds: float) -> None:
        self.ahead = seconds

    def now(self) -> Any:
        from datetime import timedelta

        return utcnow() + timedelta(seconds=self.ahead)


async def make_site_in(db: Database, settings: Settings) -> str:
    from frontdesk.actions.sites import do_create_site
    from frontdesk.security.keys import SecretBox

    async with db.session_scope() as session:
        created = await do_create_site(
            session, SecretBox(settings.server_key), name="Shop", origins=[]
        )
    return created.site.id


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATA_DIR=str(settings.data_dir),
        FRONTDESK_LOG_LEVEL="warning",
        **extra,
    )
    if settings.secret_key is not None:
        env["FRONTDESK_SECRET_KEY"] = settings.secret_key.get_secret_value()
    if settings.database_url:
        env["FRONTDESK_DATABASE_URL"] = settings.database_url
    return env


async def frontdesk(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [FRONTDESK, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_the_cli_shows_progress_and_a_summary(settings: Settings, tmp_path: Path) -> None:
    db = Database(settings)
    try:
        site_id = await make_site_in(db, settings)
    finally:
        await db.dispose()
    folder = tmp_path / "help"
    folder.mkdir()
    (folder / "returns.md").write_text(RETURNS)
    (folder / "copy-of-returns.md").write_text(RETURNS)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\ngarbage")
    notes = tmp_path / "notes.docx"
    notes.write_bytes(b"PK\x03\x04")

    added = await frontdesk(
        cli_env(settings), "kb", "add", "--site", site_id, str(folder), str(notes), "--json"
    )
    assert added.returncode == 1, added.stderr  # a file failed
    report = json.loads(added.stdout)
    files = {f["source"]: f for f in report["files"]}
    assert list(files) == [
        "help/broken.pdf",
        "help/copy-of-returns.md",
        "help/returns.md",
        notes.as_posix(),
    ]
    assert files["help/broken.pdf"]["status"] == "failed"
    assert "not a readable PDF" in files["help/broken.pdf"]["error"]
    first = files["help/copy-of-returns.md"]
    assert first["status"] == "done" and first["outcome"] == "added" and first["chunks"] == 1
    copy = files["help/returns.md"]
    assert copy["status"] == "duplicate" and copy["document_id"] == first["document_id"]
    assert files[notes.as_posix()]["status"] == "failed"
    assert "unsupported type" in files[notes.as_posix()]["error"]
    assert files[notes.as_posix()]["ingestion_id"] is None  # refused before any ingestion
    assert report["summary"] == {"done": 1, "duplicate": 1, "failed": 2}

    # As a person sees it: a live progress bar per file on the terminal, then the summary.
    terminal = cli_env(settings, TTY_COMPATIBLE="1", TTY_INTERACTIVE="1", COLUMNS="120")
    again = await frontdesk(terminal, "kb", "add", "--site", site_id, str(folder))
    assert again.returncode == 1
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", again.stderr)  # colours, cursor moves
    assert "━" in screen and "1/1 chunks duplicate" in screen  # the bars, at their end
    for line in (
        "help/copy-of-returns.md",
        "duplicate: unchanged",
        f"duplicate: same text as {first['document_id']}",
        "failed: help/broken.pdf: not a readable PDF",
        "0 indexed (0 chunks), 2 duplicate, 1 failed",
    ):
        assert line in screen, screen

    only_good = await frontdesk(
        cli_env(settings), "kb", "add", "--site", site_id, str(folder / "returns.md"), "--json"
    )
    assert only_good.returncode == 0, only_good.stderr


async def test_a_worker_killed_mid_ingestion_leaves_it_to_another(
    settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL while embedding: no cleanup at all. The job's lease runs out, a second worker
    runs the ingestion again from the start, and the document has each chunk once."""
    sections = 8000
    body = "# Catalogue\n\n" + "\n\n".join(
        f"## Item {i}\n\nItem {i} weighs {i % 90 + 1} grams and ships in {i % 5 + 1} days."
        for i in range(sections)
    )
    db = Database(settings)
    try:
        site_id = await make_site_in(db, settings)
        async with db.session_scope() as session:
            row, job = await do_queue_ingestion(
                session,
                site_id=site_id,
                upload=check_upload(body.encode(), name="catalogue.md"),
                now=utcnow(),
            )
        env = cli_env(settings, FRONTDESK_JOB_LEASE_S="2", FRONTDESK_JOB_POLL_S="0.2")

        async def ingestion() -> KnowledgeIngestion:
            async with db.read_scope() as session:
                found = await session.get(KnowledgeIngestion, row.id)
            assert found is not None
            return found

        first = subprocess.Popen(
            [FRONTDESK, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        second: subprocess.Popen[bytes] | None = None
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                seen = await ingestion()
                if seen.stage == "embedding" and 0 < seen.done < sections:
                    break
                assert seen.status in ("queued", "running"), (seen.status, seen.error)
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the first worker never got to embedding")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert (await ingestion()).status == "running"  # nobody told the database

            second = subprocess.Popen(
                [FRONTDESK, "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 180
            while (seen := await ingestion()).status in ("queued", "running"):
                assert time.monotonic() < deadline, "the second worker did not finish"
                await asyncio.sleep(0.1)
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(timeout=15)
        assert seen.status == "done" and seen.chunk_count == sections, (seen.status, seen.error)
        async with db.read_scope() as session:
            chunks = await session.scalar(select(func.count()).select_from(KnowledgeChunk))
            distinct = await session.scalar(
                select(func.count(func.distinct(KnowledgeChunk.ordinal)))
            )
            documents = await session.scalar(select(func.count()).select_from(KnowledgeDocument))
            job_row = await session.get(Job, job.id)
        assert chunks == distinct == sections and documents == 1
        assert job_row is not None and job_row.status == "succeeded" and job_row.attempts == 2
        stages = [e["stage"] for e in await events_of(db, row.id)]
        assert stages.count("extracting") == 2 and stages[-1] == "done"
    finally:
        await db.dispose()


async def events_of(db: Database, ingestion_id: str) -> list[dict[str, Any]]:
    async with db.read_scope() as session:
        rows = (
            await session.execute(
                select(EventRecord.data)
                .where(EventRecord.type == "job.progress")
                .order_by(EventRecord.offset)
            )
        ).scalars()
        return [d for d in rows if d.get("ingestion_id") == ingestion_id]


async def test_an_ingestion_whose_job_died_reads_as_failed(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    """Its job buried without the run recording the end (the database was down at its last
    attempt): the ingestion is not shown as waiting forever."""
    admin = await admin_key(services)
    await services.worker.stop()  # nothing runs the job here
    accepted = await upload(client, admin, site.id, "a.md", b"# A\n\nText.")
    assert accepted.status_code == 202
    async with services.db.session_scope() as session:
        await session.execute(
            update(Job).values(status="dead", last_error="OperationalError: connection refused")
        )
    got = (await client.get(f"{API}/ingestions/{accepted.json()['id']}", headers=admin)).json()
    assert got["status"] == "failed" and got["progress"]["stage"] == "failed"
    assert "connection refused" in got["error"]


async def test_a_file_that_never_finishes_reading_fails(
    client: httpx.AsyncClient,
    services: Services,
    site: SiteInfo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lease is kept while a run lasts, so a file whose reading never ends (a pathological
    PDF) must end the ingestion by itself rather than hold the job forever."""
    release = threading.Event()

    def stuck(*_: Any, **__: Any) -> Any:
        release.wait(10)
        raise AssertionError("not reached in time")

    monkeypatch.setattr(ingestion_module, "parse_upload", stuck)
    monkeypatch.setattr(ingestion_module, "READ_TIMEOUT_S", 0.3)
    admin = await admin_key(services)
    try:
        ended = await finished(
            client, admin, await upload(client, admin, site.id, "a.md", b"# A\n\nx")
        )
    finally:
        release.set()
    assert ended["status"] == "failed" and "took longer than" in ended["error"]

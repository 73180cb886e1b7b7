"""The `knowledge.ingest` job: one upload read, chunked, embedded and indexed, with progress.

The worker runs it for uploads through the API; `frontdesk kb add` runs the very same handler
in its own process on a job it holds (`run_held`), so both behave alike. A run:

1. marks the ingestion `running` (stage `extracting`);
2. reads the upload (PDF text, HTML main text…) and chunks it, in a worker thread;
3. embeds the chunks in batches, telling progress (stage `embedding`, chunks done of total) at
   most every `PROGRESS_INTERVAL_S` and every `PROGRESS_STEP` of the work: a large document
   gives some twenty `job.progress` events, a small one none between its start and its end;
   a text the site already has is not embedded at all;
4. indexes it and ends the ingestion (`done`, `duplicate` or `failed`) in one transaction that
   also closes the job's claim, so the index and the job's end are committed together or not at
   all. A run that lost its claim changes nothing.

While it runs, the job's lease is extended every third of its length: a long PDF does not lose
its claim to another worker, and a worker that dies mid-run loses it within one lease, after
which the job runs again from the start. Indexing replaces a document's chunks whole
(`do_index_prepared`), so a run repeated after a crash never leaves chunks twice.

A file that cannot be read (a broken or encrypted PDF, no text, or still not read after
`READ_TIMEOUT_S`) ends `failed` with the reason at once; any other error is retried with backoff
and, at the job's last attempt, ends the ingestion `failed` too, so no ingestion is left waiting
forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import undefer

from frontdesk.actions.ingestions import (
    INGEST_JOB,
    IngestionRef,
    do_end_ingestion,
    do_record_progress,
    do_retry_ingestion,
    do_start_ingestion,
)
from frontdesk.actions.knowledge import (
    IndexResult,
    PreparedDocument,
    do_index_prepared,
    find_same_text,
    prepare_document,
)
from frontdesk.db import Database
from frontdesk.jobs import queue
from frontdesk.jobs.worker import WorkerContext, backoff
from frontdesk.knowledge.embed import Embedder, default_embedder
from frontdesk.knowledge.ingest import DocumentText, UnsupportedDocument, parse_upload
from frontdesk.models import Job
from frontdesk.models.knowledge import FINAL_INGESTION_STATES, KnowledgeIngestion

log = logging.getLogger(__name__)

__all__ = ["INGEST_JOB", "KnowledgeIngest", "LeaseLost", "run_held"]

PROGRESS_INTERVAL_S = 0.5  # at most one progress write per half second…
PROGRESS_STEP = 0.05  # …and only when another 5 % of the work is done
READ_TIMEOUT_S = 600.0  # reading one file (a 2,000-page PDF takes a few minutes at most)

Observer = Callable[[str, int, int], object]  # (stage, done, total), in-process, every step
T = TypeVar("T")


class LeaseLost(RuntimeError):
    """Another worker holds the job now (this one's lease ran out): stop, change nothing."""


class KnowledgeIngest:
    """The job handler. `observer`, when given, hears every step in-process (the CLI's
    progress bar); the database hears them throttled."""

    def __init__(
        self, db: Database, *, embedder: Embedder | None = None, observer: Observer | None = None
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.observer = observer

    async def __call__(self, payload: dict[str, Any], ctx: WorkerContext) -> None:
        ingestion_id = str(payload.get("ingestion_id", ""))
        async with self.db.read_scope() as session:
            row = await session.get(
                KnowledgeIngestion, ingestion_id, options=[undefer(KnowledgeIngestion.content)]
            )
        if row is None or row.status in FINAL_INGESTION_STATES or row.content is None:
            return  # gone with its site, or ended by an earlier run that committed
        run = _Run(self, ctx, row)
        await _holding_lease(self.db, ctx, run.execute())


async def _holding_lease(db: Database, ctx: WorkerContext, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` while extending the job's lease every third of its length; when the lease is
    found lost, cancel the work and raise `LeaseLost`."""
    lease_s = ctx.worker.lease_s

    async def keep() -> None:
        while True:
            await asyncio.sleep(lease_s / 3)
            until = ctx.clock.now() + timedelta(seconds=lease_s)
            try:
                async with db.session_scope() as session:
                    held = await queue.extend_lease(session, ctx.job.id, ctx.worker.id, until=until)
            except Exception:  # the database may be restarting: try again next time
                log.warning("could not extend the lease of job %s", ctx.job.id, exc_info=True)
                continue
            if not held:
                raise LeaseLost(f"job {ctx.job.id}: another worker took it over")

    task = asyncio.ensure_future(work)
    keeper = asyncio.ensure_future(keep())
    try:
        await asyncio.wait({task, keeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        keeper.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(keeper, task, return_exceptions=True)
    if task.done() and not task.cancelled():
        return task.result()
    raise LeaseLost(f"job {ctx.job.id}: another worker took it over")


class _Run:
    def __init__(self, handler: KnowledgeIngest, ctx: WorkerContext, row: KnowledgeIngestion):
        self.db = handler.db
        self.embedder = handler.embedder or default_embedder()
        self.observer = handler.observer
        self.ctx = ctx
        self.row = row
        self.ref = IngestionRef(row.id, row.site_id, ctx.job.id)
        self._written_at = 0.0
        self._written_done = 0

    def _tell(self, stage: str, done: int, total: int) -> None:
        if self.observer is not None:
            self.observer(stage, done, total)

    async def execute(self) -> None:
        try:
            async with self.db.session_scope() as session:
                await do_start_ingestion(session, self.ref, now=self.ctx.clock.now())
            self._tell("extracting", 0, 0)
            self._written_at = time.monotonic()
            prepared = await self._prepare()
            await self._index(prepared)
        except LeaseLost:
            raise
        except UnsupportedDocument as exc:
            await self._end_failed(str(exc))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if self.ctx.job.attempts >= self.ctx.job.max_attempts:
                log.warning("ingestion %s failed for good: %s", self.ref.id, reason)
                await self._end_failed(f"could not be indexed ({reason})")
                return
            async with self.db.session_scope() as session:
                await do_retry_ingestion(session, self.ref, error=reason)
            raise

    async def _prepare(self) -> PreparedDocument:
        row = self.row
        assert row.content is not None
        reading = asyncio.to_thread(
            parse_upload,
            row.content,
            content_type=row.content_type,
            source=row.source,
            fallback_title=row.title,
        )
        try:
            document: DocumentText = await asyncio.wait_for(reading, READ_TIMEOUT_S)
        except TimeoutError:
            # The thread cannot be stopped and ends on its own; the ingestion must not wait,
            # kept alive by its lease, for a file that never finishes reading.
            raise UnsupportedDocument(
                f"{row.source}: reading it took longer than {READ_TIMEOUT_S:.0f} s."
            ) from None
        async with self.db.read_scope() as session:
            known = await find_same_text(session, row.site_id, document)
        prepared = await prepare_document(
            document, embedder=self.embedder, embed=known is None, on_progress=self._embedded
        )
        if not prepared.chunks:
            raise UnsupportedDocument(f"{row.source}: no text to index.")
        return prepared

    async def _embedded(self, done: int, total: int) -> None:
        self._tell("embedding", done, total)
        now = time.monotonic()
        if done >= total:
            return  # the end is told by the indexing transaction, right after
        if now - self._written_at < PROGRESS_INTERVAL_S:
            return
        if done - self._written_done < total * PROGRESS_STEP:
            return
        self._written_at, self._written_done = now, done
        async with self.db.session_scope() as session:
            await do_record_progress(session, self.ref, stage="embedding", done=done, total=total)

    async def _index(self, prepared: PreparedDocument) -> None:
        total = len(prepared.chunks)
        self._tell("indexing", total, total)
        async with self.db.session_scope() as session:
            await self._close_claim(session)
            result: IndexResult = await do_index_prepared(
                session,
                site_id=self.row.site_id,
                prepared=prepared,
                url=self.row.url,
                embedder=self.embedder,
            )
            duplicate = result.status in ("duplicate", "unchanged")
            status = "duplicate" if duplicate else "done"
            await do_end_ingestion(
                session,
                self.ref,
                status=status,
                now=self.ctx.clock.now(),
                outcome=result.status,
                document_id=result.document.id,
                title=result.document.title,
                chunk_count=result.document.chunk_count,
            )
        self._tell(status, result.document.chunk_count, result.document.chunk_count)

    async def _end_failed(self, reason: str) -> None:
        async with self.db.session_scope() as session:
            await self._close_claim(session)
            await do_end_ingestion(
                session, self.ref, status="failed", now=self.ctx.clock.now(), error=reason
            )
        self._tell("failed", 0, 0)

    async def _close_claim(self, session: Any) -> None:
        """Close the job in this transaction, first: without the claim, roll everything back."""
        await self.ctx.finish_in(session)
        if not self.ctx.finished:
            raise LeaseLost(f"job {self.ctx.job.id}: the claim was lost before indexing")


async def run_held(handler: KnowledgeIngest, job: Job, ctx: WorkerContext) -> None:
    """Run a job the caller holds (`queue.hold`) the way the worker would: done when the
    handler returns, back in the queue with backoff when it raises (a worker retries it)."""
    try:
        await handler(job.payload, ctx)
    except LeaseLost:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        async with handler.db.session_scope() as session:
            run_at = ctx.clock.now() + timedelta(seconds=backoff(job.attempts))
            await queue.retry(session, job.id, ctx.worker.id, run_at=run_at, error=reason)
        raise
    if not ctx.finished:
        async with handler.db.session_scope() as session:
            await queue.finish(session, job.id, ctx.worker.id, ctx.clock.now())

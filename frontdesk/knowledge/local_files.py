"""Ingesting local files in this process, for `frontdesk kb add`.

Each file is checked as an API upload is (`check_upload`), queued as an ingestion with its job
held by this process (`queue.hold`), and run through the job's own handler (`run_held`): the
statuses, the events and the documents are the ones an upload through the API would give. Had
this process died mid-file, the job's lease runs out and a server's worker finishes the file.
Files are read one at a time, so memory holds one file at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from frontdesk.actions.ingestions import check_upload, do_queue_ingestion
from frontdesk.db import Database
from frontdesk.jobs.worker import Worker, WorkerContext
from frontdesk.knowledge.ingest import (
    CONTENT_TYPES,
    DocumentTooLarge,
    UnsupportedDocument,
    content_type_of,
    max_bytes,
)
from frontdesk.knowledge.ingestion import KnowledgeIngest, Observer, run_held
from frontdesk.queries.ingestions import get_ingestion
from frontdesk.realtime.broker import MemoryBroker


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: Path
    source: str  # the document's source within the site: its path under the folder given


@dataclass(slots=True)
class FileResult:
    file: LocalFile
    status: str  # done, duplicate or failed (or queued: failed here, retried by a worker)
    outcome: str | None = None
    ingestion_id: str | None = None
    document_id: str | None = None
    title: str | None = None
    chunks: int = 0
    seconds: float = 0.0
    error: str | None = None


def collect_files(paths: list[Path]) -> list[LocalFile]:
    """The files to add: each file named, and the supported files under each folder named.

    A file is known by its path under the folder given (`docs/guide/index.md`), so two files with
    the same name in different folders stay two documents. Raises FileNotFoundError."""
    files: list[LocalFile] = []
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and found.suffix.lower() in CONTENT_TYPES:
                    source = (Path(path.name) / found.relative_to(path)).as_posix()
                    files.append(LocalFile(found, source))
        elif path.exists():
            files.append(LocalFile(path, path.as_posix()))
        else:
            raise FileNotFoundError(f"{path} does not exist")
    return files


def _read(file: LocalFile) -> bytes:
    limit = max_bytes(content_type_of(file.source))
    if file.path.stat().st_size > limit:  # not read at all
        raise DocumentTooLarge(f"{file.source}: larger than {limit} bytes.")
    return file.path.read_bytes()


async def ingest_files(
    db: Database,
    site_id: str,
    files: list[LocalFile],
    *,
    lease_s: float,
    observer: Callable[[LocalFile], Observer | None] = lambda _: None,
) -> list[FileResult]:
    """Ingest the files one after the other; `observer(file)` may give a callback that hears
    that file's progress (stage, done, total)."""
    worker = Worker(db, MemoryBroker(), {}, lease_s=lease_s)
    results: list[FileResult] = []
    for file in files:
        started = time.perf_counter()
        result = await _ingest_one(db, worker, site_id, file, observer(file))
        result.seconds = round(time.perf_counter() - started, 3)
        results.append(result)
    return results


async def _ingest_one(
    db: Database, worker: Worker, site_id: str, file: LocalFile, observer: Observer | None
) -> FileResult:
    try:
        upload = check_upload(_read(file), name=file.source)
    except (UnsupportedDocument, OSError) as exc:
        if observer is not None:
            observer("failed", 0, 0)
        reason = str(exc) if isinstance(exc, UnsupportedDocument) else f"{file.source}: {exc}"
        return FileResult(file, "failed", error=reason)
    async with db.session_scope() as session:
        row, job = await do_queue_ingestion(
            session,
            site_id=site_id,
            upload=upload,
            now=worker.clock.now(),
            held_by=worker.id,
            lease_s=worker.lease_s,
        )
    handler = KnowledgeIngest(db, observer=observer)
    error: str | None = None
    try:
        await run_held(handler, job, WorkerContext(worker, job))
    except Exception as exc:  # back in the queue: a server's worker will try again
        error = f"{type(exc).__name__}: {exc} (queued again for the worker)"
    async with db.read_scope() as session:
        view = await get_ingestion(session, row.id)
    if view is None:  # the site was deleted meanwhile
        return FileResult(file, "failed", ingestion_id=row.id, error="the site is gone")
    return FileResult(
        file,
        view.status if error is None else "failed",
        outcome=view.outcome,
        ingestion_id=view.id,
        document_id=view.document_id,
        title=view.title,
        chunks=view.chunk_count,
        error=error or view.error,
    )

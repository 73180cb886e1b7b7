"""Knowledge ingestions: accepting an upload, and recording its progress and its end.

`check_upload` makes the cheap checks (type, size, emptiness, a PDF header) so that a bad file is
refused at once with the contract's codes; `do_queue_ingestion` stores the upload and enqueues
the `knowledge.ingest` job in the same transaction, so the job exists exactly when the upload
does. The job (`knowledge.ingestion`) then moves the ingestion through its stages with
`do_start_ingestion`, `do_record_progress` and `do_end_ingestion`; each records a `job.progress`
event, the end one with the final status as its stage. The upload's bytes are dropped when the
ingestion ends: the document's text lives on in its chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.errors import AppError, invalid_request
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.jobs import queue
from frontdesk.knowledge.ingest import (
    DocumentTooLarge,
    UnsupportedDocument,
    UnsupportedType,
    content_type_of,
    title_from_name,
)
from frontdesk.knowledge.ingest import check_upload as check_bytes
from frontdesk.models import Job
from frontdesk.models.knowledge import KnowledgeIngestion

INGEST_JOB = "knowledge.ingest"
INGEST_ATTEMPTS = 3  # an ingestion that failed for other reasons than its file is retried


@dataclass(frozen=True, slots=True)
class Upload:
    """A document accepted for ingestion: its bytes and what is known of it before reading."""

    source: str
    title: str
    content_type: str
    content: bytes
    url: str | None = None


@dataclass(frozen=True, slots=True)
class IngestionRef:
    """What a running ingestion's writes need to name it and its job."""

    id: str
    site_id: str
    job_id: int | None


def upload_error(exc: UnsupportedDocument) -> AppError:
    """The contract's error for a file refused before ingestion."""
    if isinstance(exc, DocumentTooLarge):
        return AppError("payload_too_large", str(exc), 413)
    if isinstance(exc, UnsupportedType):
        return AppError("unsupported_media_type", str(exc), 415)
    return invalid_request(str(exc))


def check_upload(
    content: bytes,
    *,
    name: str,
    declared_type: str | None = None,
    title: str | None = None,
    url: str | None = None,
) -> Upload:
    """An upload ready to queue, or `UnsupportedDocument` (see `upload_error`) when the cheap
    checks refuse it. `name` is the document's source within the site (a file name or path)."""
    content_type = content_type_of(name, declared_type)
    check_bytes(content, content_type=content_type, name=name)
    return Upload(
        source=name[:1000],
        title=(title or title_from_name(name))[:300],
        content_type=content_type,
        content=content,
        url=url,
    )


def progress_data(
    ref: IngestionRef, *, stage: str, done: int, total: int, document_id: str | None = None
) -> dict[str, Any]:
    return {
        "job": ref.job_id,
        "kind": INGEST_JOB,
        "ingestion_id": ref.id,
        "document_id": document_id,
        "stage": stage,
        "done": done,
        "total": total,
    }


async def do_queue_ingestion(
    session: AsyncSession,
    *,
    site_id: str,
    upload: Upload,
    now: datetime,
    held_by: str | None = None,
    lease_s: float = 60.0,
) -> tuple[KnowledgeIngestion, Job]:
    """Store the upload and enqueue its job; both take effect on commit, whose `job.progress`
    event (stage `queued`) wakes the workers. With `held_by`, the job is that worker's claim
    from the start (a command that runs it itself); should that process die, the lease runs out
    and any worker takes the job."""
    row = KnowledgeIngestion(
        id=new_id("ing"),
        site_id=site_id,
        source=upload.source,
        title=upload.title,
        url=upload.url,
        content_type=upload.content_type,
        size=len(upload.content),
        content=upload.content,
        status="queued",
        stage="queued",
        done=0,
        total=0,
        chunk_count=0,
        created_at=now,
    )
    session.add(row)
    job = queue.enqueue(
        session, INGEST_JOB, {"ingestion_id": row.id}, run_at=now, max_attempts=INGEST_ATTEMPTS
    )
    if held_by is not None:
        queue.hold(job, worker=held_by, now=now, lease_s=lease_s)
    await session.flush()  # the job's id
    row.job_id = job.id
    ref = IngestionRef(row.id, site_id, job.id)
    record_event(
        session,
        "job.progress",
        site_id=site_id,
        data=progress_data(ref, stage="queued", done=0, total=0),
    )
    return row, job


async def _update(session: AsyncSession, ref: IngestionRef, **values: Any) -> None:
    await session.execute(
        update(KnowledgeIngestion).where(KnowledgeIngestion.id == ref.id).values(**values)
    )


async def do_start_ingestion(
    session: AsyncSession, ref: IngestionRef, *, now: datetime, stage: str = "extracting"
) -> None:
    await _update(
        session, ref, status="running", stage=stage, done=0, total=0, started_at=now, error=None
    )
    record_event(
        session,
        "job.progress",
        site_id=ref.site_id,
        data=progress_data(ref, stage=stage, done=0, total=0),
    )


async def do_record_progress(
    session: AsyncSession, ref: IngestionRef, *, stage: str, done: int, total: int
) -> None:
    await _update(session, ref, stage=stage, done=done, total=total)
    data = progress_data(ref, stage=stage, done=done, total=total)
    record_event(session, "job.progress", site_id=ref.site_id, data=data)


async def do_retry_ingestion(session: AsyncSession, ref: IngestionRef, *, error: str) -> None:
    """Back in the queue after a failure that was not the file's (the job retries later)."""
    await _update(session, ref, status="queued", stage="queued", error=error[:2000])
    data = progress_data(ref, stage="queued", done=0, total=0)
    record_event(session, "job.progress", site_id=ref.site_id, data=data)


async def do_end_ingestion(
    session: AsyncSession,
    ref: IngestionRef,
    *,
    status: str,
    now: datetime,
    outcome: str | None = None,
    document_id: str | None = None,
    title: str | None = None,
    chunk_count: int = 0,
    error: str | None = None,
) -> None:
    """The ingestion's end: `done` (added or updated), `duplicate` (the text is already the
    document `document_id`, under this source or another) or `failed` (with the reason). The
    upload's bytes are dropped."""
    values: dict[str, Any] = {
        "status": status,
        "stage": status,
        "outcome": outcome,
        "document_id": document_id,
        "chunk_count": chunk_count,
        "done": chunk_count,
        "total": chunk_count,
        "error": error[:2000] if error else None,
        "content": None,
        "finished_at": now,
    }
    if title:
        values["title"] = title[:300]
    await _update(session, ref, **values)
    data = progress_data(
        ref, stage=status, done=chunk_count, total=chunk_count, document_id=document_id
    )
    if error:
        data["error"] = error[:500]
    record_event(session, "job.progress", site_id=ref.site_id, data=data)

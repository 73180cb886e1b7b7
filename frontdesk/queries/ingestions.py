"""Reading knowledge ingestions: one by id, or a site's most recent.

An ingestion's status is what its job last wrote, with one repair on reading: if its job died
(buried after its last attempt without the run recording the end, e.g. the database was down
then), it reads as `failed` with the job's last error, never as waiting forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.models import Job
from frontdesk.models.knowledge import FINAL_INGESTION_STATES, KnowledgeIngestion


@dataclass(frozen=True, slots=True)
class IngestionView:
    id: str
    site_id: str
    source: str
    title: str
    url: str | None
    content_type: str
    size: int
    status: str
    outcome: str | None
    stage: str
    done: int
    total: int
    chunk_count: int
    document_id: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _view(row: KnowledgeIngestion, job: Job | None) -> IngestionView:
    status, stage, error = row.status, row.stage, row.error
    if status not in FINAL_INGESTION_STATES and job is not None and job.status == "dead":
        status, stage = "failed", "failed"
        error = f"could not be indexed ({job.last_error or 'the job gave up'})"
    return IngestionView(
        id=row.id,
        site_id=row.site_id,
        source=row.source,
        title=row.title,
        url=row.url,
        content_type=row.content_type,
        size=row.size,
        status=status,
        outcome=row.outcome,
        stage=stage,
        done=row.done,
        total=row.total,
        chunk_count=row.chunk_count,
        document_id=row.document_id,
        error=error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


_WITH_JOB = select(KnowledgeIngestion, Job).outerjoin(Job, Job.id == KnowledgeIngestion.job_id)


async def get_ingestion(session: AsyncSession, ingestion_id: str) -> IngestionView | None:
    if len(ingestion_id) > 40:
        return None
    stmt = _WITH_JOB.where(KnowledgeIngestion.id == ingestion_id)
    found = (await session.execute(stmt)).first()
    return _view(found[0], found[1]) if found is not None else None


async def list_ingestions(
    session: AsyncSession, site_id: str, *, limit: int = 50
) -> list[IngestionView]:
    """The site's ingestions, newest first."""
    stmt = _WITH_JOB.where(KnowledgeIngestion.site_id == site_id)
    stmt = stmt.order_by(KnowledgeIngestion.created_at.desc(), KnowledgeIngestion.id.desc())
    rows = (await session.execute(stmt.limit(limit))).all()
    return [_view(row, job) for row, job in rows]

"""Adding documents to a site's knowledge base (re-adding a source re-indexes it)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.audit import record_audit
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.knowledge.chunking import chunk_markdown
from frontdesk.knowledge.ingest import DocumentText
from frontdesk.models import KnowledgeChunk, KnowledgeDocument, utcnow
from frontdesk.security.principals import Principal


async def do_add_document(
    session: AsyncSession, *, site_id: str, document: DocumentText, url: str | None = None
) -> KnowledgeDocument:
    stmt = select(KnowledgeDocument).where(
        KnowledgeDocument.site_id == site_id, KnowledgeDocument.source == document.source
    )
    existing = (await session.execute(stmt)).scalar_one_or_none()
    now = utcnow()
    if existing is not None:
        if existing.checksum == document.checksum:
            return existing
        await session.execute(
            delete(KnowledgeChunk).where(KnowledgeChunk.document_id == existing.id)
        )
        row = existing
        row.title, row.checksum, row.updated_at = document.title, document.checksum, now
        row.content_type = document.content_type
        row.url = url or row.url
    else:
        row = KnowledgeDocument(
            id=new_id("doc"),
            site_id=site_id,
            title=document.title,
            source=document.source,
            url=url,
            content_type=document.content_type,
            checksum=document.checksum,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()  # chunks reference the document
    chunks = chunk_markdown(document.text, title=document.title)
    session.add_all(
        KnowledgeChunk(
            document_id=row.id, site_id=site_id, ordinal=i, heading=c.heading, text=c.text
        )
        for i, c in enumerate(chunks)
    )
    row.chunk_count = len(chunks)
    record_event(
        session,
        "knowledge.document_indexed",
        site_id=site_id,
        data={"document_id": row.id, "title": row.title, "chunks": len(chunks)},
    )
    return row


async def do_delete_document(
    session: AsyncSession, document: KnowledgeDocument, *, actor: Principal | None
) -> None:
    record_audit(session, actor, "knowledge.deleted", target=document.id, site_id=document.site_id)
    await session.delete(document)

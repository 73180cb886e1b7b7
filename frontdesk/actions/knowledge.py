"""Changing a site's knowledge base: adding (re-indexing) and deleting documents.

Adding a document chunks and embeds it first (the embedding runs in a worker thread, before the
transaction touches the database), then, within the caller's transaction:

* the same source with the same checksum: nothing to do ("unchanged");
* another document of the site with the same checksum: not indexed twice ("duplicate", the
  result names the document it duplicates; a stale older version of this source is removed);
* otherwise the document's chunks are (re)placed with their vectors ("added" / "updated").

Every change replaces the site's knowledge version (`knowledge_state`), which invalidates the
vector index and any cache keyed by it, in every process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, Executable, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.audit import record_audit
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.knowledge.chunking import Chunk, chunk_markdown
from frontdesk.knowledge.embed import (
    Embedder,
    EmbedderUnavailable,
    chunk_vectors,
    default_embedder,
)
from frontdesk.knowledge.ingest import DocumentText
from frontdesk.knowledge.vectors import blob_fits, to_blob
from frontdesk.models import KnowledgeChunk, KnowledgeDocument, utcnow
from frontdesk.models.knowledge import KnowledgeState
from frontdesk.security.principals import Principal

log = logging.getLogger(__name__)

IndexStatus = Literal["added", "updated", "unchanged", "duplicate"]


@dataclass(frozen=True, slots=True)
class IndexResult:
    """`document` is the stored document; for a duplicate, the one it duplicates."""

    document: KnowledgeDocument
    status: IndexStatus


async def embed_chunks(chunks: list[Chunk], embedder: Embedder) -> list[bytes | None]:
    """Each chunk's stored vector; all None when the embedding model is unavailable (the
    vector index then embeds them when it is built)."""
    pairs = [(c.heading, c.text) for c in chunks]
    try:
        vectors = await asyncio.to_thread(chunk_vectors, embedder, pairs)
    except EmbedderUnavailable as exc:
        log.warning("chunks stored without vectors", extra={"reason": str(exc)})
        return [None] * len(chunks)
    return [to_blob(v) for v in vectors]


async def bump_knowledge_version(session: AsyncSession, site_id: str) -> None:
    values = {"site_id": site_id, "version": secrets.token_hex(8), "changed_at": utcnow()}
    upsert: Executable
    if session.get_bind().dialect.name == "sqlite":
        stmt = sqlite_insert(KnowledgeState).values(**values)
        upsert = stmt.on_conflict_do_update(
            index_elements=["site_id"],
            set_={"version": stmt.excluded.version, "changed_at": stmt.excluded.changed_at},
        )
    else:
        pg_stmt = pg_insert(KnowledgeState).values(**values)
        upsert = pg_stmt.on_conflict_do_update(
            index_elements=["site_id"],
            set_={"version": pg_stmt.excluded.version, "changed_at": pg_stmt.excluded.changed_at},
        )
    await session.execute(upsert)


async def _find(
    session: AsyncSession, site_id: str, where: ColumnElement[bool]
) -> KnowledgeDocument | None:
    stmt = select(KnowledgeDocument).where(KnowledgeDocument.site_id == site_id, where)
    return (await session.execute(stmt.order_by(KnowledgeDocument.created_at).limit(1))).scalar()


async def _store_missing_vectors(
    session: AsyncSession, document: KnowledgeDocument, embedder: Embedder
) -> None:
    """Vectors for an unchanged document's chunks stored without one (model was unavailable)."""
    stmt = select(KnowledgeChunk).where(KnowledgeChunk.document_id == document.id)
    chunks = [
        c
        for c in (await session.execute(stmt)).scalars()
        if not blob_fits(c.embedding, embedder.dim)
    ]
    if not chunks:
        return
    blobs = await embed_chunks([Chunk(c.heading, c.text) for c in chunks], embedder)
    if all(b is None for b in blobs):
        return
    for chunk, blob in zip(chunks, blobs, strict=True):
        chunk.embedding = blob
    await bump_knowledge_version(session, document.site_id)


def _new_document(site_id: str, document: DocumentText, url: str | None) -> KnowledgeDocument:
    now = utcnow()
    return KnowledgeDocument(
        id=new_id("doc"),
        site_id=site_id,
        title=document.title,
        source=document.source,
        url=url,
        content_type=document.content_type,
        checksum=document.checksum,
        chunk_count=0,
        created_at=now,
        updated_at=now,
    )


async def _replace_chunks(
    session: AsyncSession, row: KnowledgeDocument, chunks: list[Chunk], blobs: list[bytes | None]
) -> None:
    await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id == row.id))
    session.add_all(
        KnowledgeChunk(
            document_id=row.id,
            site_id=row.site_id,
            ordinal=i,
            heading=c.heading,
            text=c.text,
            embedding=blob,
        )
        for i, (c, blob) in enumerate(zip(chunks, blobs, strict=True))
    )
    row.chunk_count = len(chunks)


async def do_index_document(
    session: AsyncSession,
    *,
    site_id: str,
    document: DocumentText,
    url: str | None = None,
    embedder: Embedder | None = None,
) -> IndexResult:
    """Add or re-index a document (see the module docstring for the outcomes)."""
    embedder = embedder or default_embedder()
    chunks = chunk_markdown(document.text, title=document.title)
    blobs = await embed_chunks(chunks, embedder)
    existing = await _find(session, site_id, KnowledgeDocument.source == document.source)
    if existing is not None and existing.checksum == document.checksum:
        await _store_missing_vectors(session, existing, embedder)
        return IndexResult(existing, "unchanged")
    original = await _find(session, site_id, KnowledgeDocument.checksum == document.checksum)
    if original is not None:
        if existing is not None:
            await session.delete(existing)
            await bump_knowledge_version(session, site_id)
        return IndexResult(original, "duplicate")
    status: IndexStatus = "added" if existing is None else "updated"
    if existing is None:
        row = _new_document(site_id, document, url)
        session.add(row)
        await session.flush()  # chunks reference the document
    else:
        row = existing
        row.title, row.checksum, row.updated_at = document.title, document.checksum, utcnow()
        row.content_type, row.url = document.content_type, url or row.url
    await _replace_chunks(session, row, chunks, blobs)
    await bump_knowledge_version(session, site_id)
    record_event(
        session,
        "knowledge.document_indexed",
        site_id=site_id,
        data={"document_id": row.id, "title": row.title, "chunks": len(chunks)},
    )
    return IndexResult(row, status)


async def do_add_document(
    session: AsyncSession,
    *,
    site_id: str,
    document: DocumentText,
    url: str | None = None,
    embedder: Embedder | None = None,
) -> KnowledgeDocument:
    """`do_index_document`, returning the stored document (for a duplicate, the original)."""
    result = await do_index_document(
        session, site_id=site_id, document=document, url=url, embedder=embedder
    )
    return result.document


async def do_delete_document(
    session: AsyncSession, document: KnowledgeDocument, *, actor: Principal | None
) -> None:
    record_audit(session, actor, "knowledge.deleted", target=document.id, site_id=document.site_id)
    await session.delete(document)
    await bump_knowledge_version(session, document.site_id)

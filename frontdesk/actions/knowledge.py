"""Changing a site's knowledge base: adding (re-indexing) and deleting documents.

Adding a document chunks and embeds it first (`prepare_document`: the embedding runs in a worker
thread, before the transaction touches the database), then, within the caller's transaction
(`do_index_prepared`; on PostgreSQL under a per-site advisory lock, so two concurrent additions
of the same text cannot both miss each other):

* the same source with the same checksum: nothing to do ("unchanged");
* another document of the site with the same checksum: not indexed twice ("duplicate", the
  result names the document it duplicates; a stale older version of this source is removed);
* otherwise the document's chunks are (re)placed with their vectors ("added" / "updated").

Every change replaces the site's knowledge version (`knowledge_state`), which invalidates the
vector index and any cache keyed by it, in every process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, Executable, delete, select, text
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


EMBED_BATCH = 256  # chunks embedded per worker-thread call (progress is told between calls)
EmbedProgress = Callable[[int, int], object]  # (chunks embedded so far, chunks in all)


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A document read, chunked and embedded: what `do_index_prepared` stores."""

    document: DocumentText
    chunks: list[Chunk]
    blobs: list[bytes | None]


async def embed_chunks(
    chunks: list[Chunk], embedder: Embedder, on_progress: EmbedProgress | None = None
) -> list[bytes | None]:
    """Each chunk's stored vector; all None when the embedding model is unavailable (the
    vector index then embeds them when it is built). Large documents are embedded in batches,
    with `on_progress(done, total)` after each."""
    pairs = [(c.heading, c.text) for c in chunks]
    blobs: list[bytes | None] = []
    try:
        for start in range(0, len(pairs), EMBED_BATCH):
            batch = pairs[start : start + EMBED_BATCH]
            vectors = await asyncio.to_thread(chunk_vectors, embedder, batch)
            blobs.extend(to_blob(v) for v in vectors)
            if on_progress is not None:
                await _maybe_await(on_progress(len(blobs), len(pairs)))
    except EmbedderUnavailable as exc:
        log.warning("chunks stored without vectors", extra={"reason": str(exc)})
        return [None] * len(chunks)
    return blobs


async def _maybe_await(result: object) -> None:
    if asyncio.iscoroutine(result):
        await result


async def prepare_document(
    document: DocumentText,
    *,
    embedder: Embedder | None = None,
    embed: bool = True,
    on_progress: EmbedProgress | None = None,
) -> PreparedDocument:
    """Chunk and (unless `embed` is false: a known duplicate needs no vectors) embed a document.
    No database access: this runs before the indexing transaction."""
    chunks = await asyncio.to_thread(chunk_markdown, document.text, title=document.title)
    if not embed:
        return PreparedDocument(document, chunks, [None] * len(chunks))
    blobs = await embed_chunks(chunks, embedder or default_embedder(), on_progress)
    return PreparedDocument(document, chunks, blobs)


async def _lock_site_knowledge(session: AsyncSession, site_id: str) -> None:
    """PostgreSQL: one indexing transaction per site at a time (SQLite writers are serial)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(f"knowledge:{site_id}".encode()).digest()[:8], "big")
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key - 2**63})


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


WRITE_BATCH = 256  # chunks deleted or inserted per statement when a document is (re)indexed


async def _replace_chunks(
    session: AsyncSession, row: KnowledgeDocument, chunks: list[Chunk], blobs: list[bytes | None]
) -> None:
    """The document's chunks replaced, in batches with a yield to the event loop between them:
    on SQLite statements run in the loop (ADR 0022), and one statement for a document of
    thousands of chunks (each also indexed by the FTS triggers) would hold it for seconds."""
    old = select(KnowledgeChunk.id).where(KnowledgeChunk.document_id == row.id)
    old_ids = list((await session.execute(old)).scalars())
    for start in range(0, len(old_ids), WRITE_BATCH):
        batch = old_ids[start : start + WRITE_BATCH]
        await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.id.in_(batch)))
        await asyncio.sleep(0)
    rows = [
        KnowledgeChunk(
            document_id=row.id,
            site_id=row.site_id,
            ordinal=i,
            heading=c.heading,
            text=c.text,
            embedding=blob,
        )
        for i, (c, blob) in enumerate(zip(chunks, blobs, strict=True))
    ]
    for start in range(0, len(rows), WRITE_BATCH):
        session.add_all(rows[start : start + WRITE_BATCH])
        await session.flush()
        await asyncio.sleep(0)
    row.chunk_count = len(chunks)


async def find_same_text(
    session: AsyncSession, site_id: str, document: DocumentText
) -> KnowledgeDocument | None:
    """A document of the site that already has this text (checksum), if any."""
    return await _find(session, site_id, KnowledgeDocument.checksum == document.checksum)


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
    prepared = await prepare_document(document, embedder=embedder)
    return await do_index_prepared(
        session, site_id=site_id, prepared=prepared, url=url, embedder=embedder
    )


async def do_index_prepared(
    session: AsyncSession,
    *,
    site_id: str,
    prepared: PreparedDocument,
    url: str | None = None,
    embedder: Embedder | None = None,
) -> IndexResult:
    """Store a prepared document: unchanged, duplicate, added or updated. Idempotent: run again
    with the same document it finds it unchanged, and a re-index replaces every chunk, so a
    retried ingestion never leaves chunks twice. Chunks prepared without vectors are stored
    without them (the vector index embeds them when it is built)."""
    embedder = embedder or default_embedder()
    document, chunks, blobs = prepared.document, prepared.chunks, prepared.blobs
    await _lock_site_knowledge(session, site_id)
    existing = await _find(session, site_id, KnowledgeDocument.source == document.source)
    if existing is not None and existing.checksum == document.checksum:
        await _store_missing_vectors(session, existing, embedder)
        return IndexResult(existing, "unchanged")
    original = await find_same_text(session, site_id, document)
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

"""Knowledge documents, their chunks, and each site's knowledge version.

Chunks carry an integer key because the full-text indexes point at it: on SQLite an FTS5 table
`knowledge_chunks_fts` kept in step by triggers, on PostgreSQL a generated `tsvector` column with a
GIN index. Both are created by the migrations, not declared here. A chunk's `embedding` is its
vector as float16 bytes (`knowledge.vectors`), null until computed.

`KnowledgeState.version` is a random token replaced in the same transaction as every change to a
site's documents, so caches built from the knowledge base (the vector index, answers) can tell
whether they are current with one primary-key read.

`KnowledgeIngestion` is one upload on its way into the knowledge base: the raw bytes (kept only
until the ingestion ends), its status and progress, and the document it produced or duplicated.
The `knowledge.ingest` job does the work (`knowledge.ingestion`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from frontdesk.models.base import Base, BigIntPK, UTCDateTime, utcnow


class KnowledgeDocument(Base):
    __tablename__ = "knowledge_documents"
    __table_args__ = (
        UniqueConstraint("site_id", "source", name="uq_knowledge_site_source"),
        Index("ix_knowledge_documents_site_checksum", "site_id", "checksum"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(1000))
    url: Mapped[str | None] = mapped_column(String(1000), default=None)
    content_type: Mapped[str] = mapped_column(String(64), default="text/markdown")
    checksum: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnowledgeChunk(Base):
    __tablename__ = "knowledge_chunks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        ForeignKey("knowledge_documents.id", ondelete="CASCADE"), index=True
    )
    site_id: Mapped[str] = mapped_column(String(40), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class KnowledgeState(Base):
    __tablename__ = "knowledge_state"

    site_id: Mapped[str] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


INGESTION_STATES = ("queued", "running", "done", "duplicate", "failed")
FINAL_INGESTION_STATES = frozenset({"done", "duplicate", "failed"})


class KnowledgeIngestion(Base):
    __tablename__ = "knowledge_ingestions"
    __table_args__ = (Index("ix_knowledge_ingestions_site_created", "site_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(1000))
    # The title given (or made from the file name) until the document is read, then its own.
    title: Mapped[str] = mapped_column(String(300))
    url: Mapped[str | None] = mapped_column(String(1000), default=None)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    # Never loaded unless asked for (`undefer`): listing ingestions must not read uploads.
    content: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    stage: Mapped[str] = mapped_column(String(16), default="queued")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    document_id: Mapped[str | None] = mapped_column(
        ForeignKey("knowledge_documents.id", ondelete="SET NULL"), default=None
    )
    job_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

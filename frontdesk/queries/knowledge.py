"""Lexical retrieval over a site's knowledge chunks.

SQLite uses the FTS5 table (`bm25`, heading weighted above body); PostgreSQL the generated
`tsvector` column (`ts_rank_cd`). The query is an OR of the question's content words, each quoted
or sanitised so that user text can never inject query syntax.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class Passage:
    chunk_id: int
    document_id: str
    title: str
    heading: str
    text: str
    url: str | None
    score: float


_SQLITE = text(
    """
    SELECT c.id, c.document_id, d.title, c.heading, c.text, d.url,
           -bm25(knowledge_chunks_fts, 2.0, 1.0) AS score
    FROM knowledge_chunks_fts
    JOIN knowledge_chunks c ON c.id = knowledge_chunks_fts.rowid
    JOIN knowledge_documents d ON d.id = c.document_id
    WHERE knowledge_chunks_fts MATCH :query AND c.site_id = :site_id
    ORDER BY bm25(knowledge_chunks_fts, 2.0, 1.0)
    LIMIT :limit
    """
)

_POSTGRES = text(
    """
    SELECT c.id, c.document_id, d.title, c.heading, c.text, d.url,
           ts_rank_cd(c.search_vector, q) AS score
    FROM knowledge_chunks c
    JOIN knowledge_documents d ON d.id = c.document_id,
         to_tsquery('english', :query) AS q
    WHERE c.site_id = :site_id AND c.search_vector @@ q
    ORDER BY score DESC, c.id
    LIMIT :limit
    """
)


async def search_passages(
    session: AsyncSession, *, site_id: str, terms: list[str], limit: int = 5
) -> list[Passage]:
    # Terms come from `knowledge.text.query_terms`: \w+ only, so quoting them is sufficient.
    if not terms:
        return []
    if session.get_bind().dialect.name == "sqlite":
        query, stmt = " OR ".join(f'"{t}"' for t in terms), _SQLITE
    else:
        query, stmt = " | ".join(terms), _POSTGRES
    rows = await session.execute(stmt, {"query": query, "site_id": site_id, "limit": limit})
    return [
        Passage(
            chunk_id=r[0],
            document_id=r[1],
            title=r[2],
            heading=r[3],
            text=r[4],
            url=r[5],
            score=float(r[6]),
        )
        for r in rows
    ]

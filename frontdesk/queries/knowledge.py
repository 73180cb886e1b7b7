"""Retrieval over a site's knowledge chunks: lexical, vector, and the two fused (hybrid).

Lexical: SQLite uses the FTS5 table (`bm25`, heading weighted above body, at most
`MAX_RANKED_ROWS` rows ranked); PostgreSQL the generated `tsvector` column (`ts_rank_cd`, the
same cap: the rows with any term if few enough, else those with all of them). On
SQLite the site is matched inside the index when the site holds a minority of the rows, and
filtered after the ranking when it holds most of them (see `_site_in_fts`). The query is an OR
of the question's content words, each quoted or sanitised so that user text can never inject
query syntax.

Vector: the site's chunk vectors live in an in-process exact index (`knowledge.vectors`), built
from the database on first use and rebuilt when `knowledge_version` changes. Chunks stored
without a usable vector (added before vectors existed) are embedded in memory while building.

Hybrid: the top `candidates` of each, fused by reciprocal rank (k = 60). Each passage records its
rank in each list and its cosine similarity to the question, which the responder's relevance
gate uses.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.knowledge.embed import Embedder, chunk_vectors
from frontdesk.knowledge.fusion import reciprocal_rank_fusion
from frontdesk.knowledge.vectors import (
    SITE_INDEXES,
    STORED_DTYPE,
    IndexCache,
    VectorHit,
    VectorIndex,
    blob_fits,
    from_blobs,
)

CANDIDATES = 20  # taken from each ranking before fusing
_FTS_TOKEN = re.compile(r"[^\W_]+")  # what FTS5's unicode61 tokenizer calls a token
MAX_RANKED_ROWS = 500  # SQLite: rows bm25 ranks for one question, about (see _sqlite_query)
INLINE_SEARCH_ROWS = 20_000  # larger indexes are searched in a worker thread


@dataclass(frozen=True, slots=True)
class Passage:
    chunk_id: int
    document_id: str
    title: str
    heading: str
    text: str
    url: str | None
    score: float
    source: str = ""
    lexical_rank: int | None = None
    vector_rank: int | None = None
    similarity: float | None = None


_COLUMNS = "c.id, c.document_id, d.title, c.heading, c.text, d.url, d.source"

# The FTS5 ranking runs over one site's rows only (`site_id` is an indexed FTS column, weight 0)
# and the join happens after the LIMIT, so only the returned rows are looked up.
_SQLITE = text(
    f"""
    SELECT {_COLUMNS}, -f.rank AS score
    FROM (
        SELECT rowid, bm25(knowledge_chunks_fts, 2.0, 1.0, 0.0) AS rank
        FROM knowledge_chunks_fts
        WHERE knowledge_chunks_fts MATCH :query
        ORDER BY rank
        LIMIT :limit
    ) AS f
    JOIN knowledge_chunks c ON c.id = f.rowid
    JOIN knowledge_documents d ON d.id = c.document_id
    WHERE c.site_id = :site_id
    ORDER BY f.rank, c.id
    """  # noqa: S608 - constant column list
)

# The same ranking for a site that holds most of the index's rows: matched without the site
# phrase, whose doclist is then nearly the whole table (bm25 reads all of it for the phrase's
# IDF, about 4 ms at 100k chunks), and the other sites' rows (a minority) dropped after ranking.
# No LIMIT inside: the rows ranked are already capped (`_sqlite_query`), and a limit before the
# site filter could let other sites' rows take the places.
_SQLITE_FILTERED_AFTER = text(
    f"""
    SELECT {_COLUMNS}, -f.rank AS score
    FROM (
        SELECT rowid, bm25(knowledge_chunks_fts, 2.0, 1.0, 0.0) AS rank
        FROM knowledge_chunks_fts
        WHERE knowledge_chunks_fts MATCH :query
    ) AS f
    JOIN knowledge_chunks c ON c.id = f.rowid
    JOIN knowledge_documents d ON d.id = c.document_id
    WHERE c.site_id = :site_id
    ORDER BY f.rank, c.id
    LIMIT :limit
    """  # noqa: S608 - constant column list
)

# PostgreSQL ranks at most `MAX_RANKED_ROWS` rows too (`ts_rank_cd` reads each row's tsvector:
# an OR of common words over 100k chunks took a second): the matching rows of the site are
# collected up to one more than that (the GIN index finds them) and ranked only when that many
# were not found. Counting each term first, as on SQLite, costs a heap visit per counted row
# here (no index-only count on a GIN index), more than the ranking it saves.
_POSTGRES = text(
    f"""
    WITH q AS (SELECT to_tsquery('english', :query) AS q),
    m AS MATERIALIZED (
        SELECT c.id, c.search_vector
        FROM knowledge_chunks c, q
        WHERE c.site_id = :site_id AND c.search_vector @@ q.q
        LIMIT :cap
    ),
    n AS (SELECT count(*) AS matched FROM m)
    SELECT {_COLUMNS}, ts_rank_cd(m.search_vector, q.q) AS score
    FROM m
    JOIN knowledge_chunks c ON c.id = m.id
    JOIN knowledge_documents d ON d.id = c.document_id,
         q, n
    WHERE n.matched < :cap
    ORDER BY score DESC, c.id
    LIMIT :limit
    """  # noqa: S608 - constant column list
)

_BY_IDS = text(
    f"""
    SELECT {_COLUMNS}, 0.0 AS score
    FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id
    WHERE c.id IN :ids
    """  # noqa: S608 - constant column list
).bindparams(bindparam("ids", expanding=True))

_VECTORS = text(
    """
    SELECT c.id, c.embedding,
           CASE WHEN c.embedding IS NULL OR length(c.embedding) <> :size THEN c.heading END,
           CASE WHEN c.embedding IS NULL OR length(c.embedding) <> :size THEN c.text END
    FROM knowledge_chunks c
    WHERE c.site_id = :site_id
    ORDER BY c.id
    """
)

_VERSION = text("SELECT version FROM knowledge_state WHERE site_id = :site_id")
_HIGHEST_CHUNK = text("SELECT max(id) FROM knowledge_chunks")


def _passage(row: Sequence[Any], lexical_rank: int | None = None) -> Passage:
    return Passage(
        chunk_id=int(row[0]),
        document_id=row[1],
        title=row[2],
        heading=row[3],
        text=row[4],
        url=row[5],
        source=row[6],
        score=float(row[7]),
        lexical_rank=lexical_rank,
    )


_COUNT = (  # one term's rows in the site, counted up to :cap
    "(SELECT count(*) FROM (SELECT 1 FROM knowledge_chunks_fts "
    "WHERE knowledge_chunks_fts MATCH :q{i} LIMIT :cap))"
)


def _fts_phrase(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _site_phrase(site_id: str) -> str:
    """The site id as an FTS5 phrase without its `site` prefix token: "site" is in every row's
    site_id column (and in many texts), and intersecting with its doclist costs milliseconds at
    100k chunks. Rows of another site whose id gives the same phrase are dropped by the outer
    `c.site_id = :site_id` filter."""
    tokens = _FTS_TOKEN.findall(site_id.lower())
    if len(tokens) > 1 and tokens[0] == "site":
        tokens = tokens[1:]
    return _fts_phrase(" ".join(tokens) or site_id)


async def _count_rows(session: AsyncSession, queries: list[str]) -> list[int]:
    """How many rows each FTS5 query matches, counted up to `MAX_RANKED_ROWS` + 1."""
    counts = ", ".join(_COUNT.format(i=i) for i in range(len(queries)))
    params: dict[str, object] = {"cap": MAX_RANKED_ROWS + 1}
    params |= {f"q{i}": q for i, q in enumerate(queries)}
    row = (await session.execute(text(f"SELECT {counts}"), params)).one()
    return [int(c) for c in row]


# A site holding more than this share of the chunks is filtered after ranking, not inside FTS5.
SITE_FILTER_AFTER_SHARE = 0.5
_TOTAL_ROWS_TTL_S = 10.0
_total_rows: dict[str, tuple[float, int]] = {}  # database URL -> (when read, max chunk id)


async def _site_in_fts(session: AsyncSession, site_rows: int | None) -> bool:
    """Whether to match the site inside FTS5 (a small site: its phrase is selective) rather than
    filter after ranking (a site with most of the rows: its phrase would select nearly all).

    The share is the site's chunk count over the highest chunk id, an upper bound of the table's
    rows read at most every few seconds: an overestimate only keeps the site phrase."""
    if site_rows is None:
        return True
    key = str(session.get_bind().engine.url)
    now = time.monotonic()
    cached = _total_rows.get(key)
    if cached is None or now - cached[0] > _TOTAL_ROWS_TTL_S:
        highest = (await session.execute(_HIGHEST_CHUNK)).scalar()
        cached = (now, int(highest or 0))
        _total_rows[key] = cached
    return site_rows <= SITE_FILTER_AFTER_SHARE * max(cached[1], 1)


async def _sqlite_query(
    session: AsyncSession, site_id: str, terms: list[str], *, in_fts: bool = True
) -> str | None:
    """The FTS5 query for the terms (within one site when `in_fts`), or None when no selective
    one exists.

    Ranking costs time per matching row, so at most about `MAX_RANKED_ROWS` rows are ranked:
    when the terms together match more, only the rows that contain one of the rarest terms
    (together under the cap) are ranked, by all the terms (those rarest ones then count twice,
    as the words that say most). When every term is that common, the rows containing all of
    them are ranked if they are few enough; otherwise lexical retrieval abstains and the
    vector ranking answers alone. Small sites (under the cap) always get the plain OR query.
    """
    site = f"site_id : {_site_phrase(site_id)} AND " if in_fts else ""
    phrases = [_fts_phrase(t) for t in terms]
    conjunction = f"{site}{' AND '.join(phrases)}"
    # The conjunction is counted with the terms, in the same round trip: on a large site most
    # questions have only common words and need it.
    *counts, together = await _count_rows(session, [f"{site}{p}" for p in phrases] + [conjunction])
    every = " OR ".join(phrases)
    if sum(counts) <= MAX_RANKED_ROWS:
        return f"{site}({every})"
    rare: list[str] = []
    total = 0
    for count, phrase in sorted(zip(counts, phrases, strict=True)):
        if total + count > MAX_RANKED_ROWS:
            break
        rare.append(phrase)
        total += count
    if rare:
        return f"{site}({' OR '.join(rare)}) AND ({every})"
    return conjunction if together <= MAX_RANKED_ROWS else None


# The planner's estimate of a tsquery's rows (from the column's statistics; planned with the
# value, never a generic plan): a fraction of a millisecond, against tens of milliseconds for the
# GIN index to list the rows of an OR of common words.
_PG_ESTIMATE = text(
    "EXPLAIN (FORMAT JSON) SELECT 1 FROM knowledge_chunks "
    "WHERE search_vector @@ to_tsquery('english', :query)"
)


_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")


async def _pg_estimated_rows(session: AsyncSession, query: str) -> float:
    plan: Any = (await session.execute(_PG_ESTIMATE, {"query": query})).scalar()
    try:
        return float(plan[0]["Plan"]["Plan Rows"])
    except (TypeError, LookupError, ValueError):
        return 0.0  # no estimate: try the query


async def _postgres_passages(
    session: AsyncSession, site_id: str, terms: list[str], limit: int, site_rows: int | None
) -> list[Passage]:
    """The rows with any of the terms, ranked if there are few enough (see `_POSTGRES`); else
    the rows with all of them, if few enough; else none (the vector ranking answers alone).

    On a large site the rows with any term are not even listed when the statistics say there
    are far too many (more than twice the cap over the whole table)."""
    # Plans made for each question's words: a plan cached for any words (PostgreSQL switches a
    # prepared statement to one after five runs) guesses the matches and can choose to test every
    # row of the table (80 ms at 20k chunks, against 3 ms for the index).
    await session.execute(_CUSTOM_PLANS)
    every, together = " | ".join(terms), " & ".join(terms)
    queries = [every] if len(terms) == 1 else [every, together]
    large = site_rows is None or site_rows > 2 * MAX_RANKED_ROWS
    if len(terms) > 1 and large and await _pg_estimated_rows(session, every) > 2 * MAX_RANKED_ROWS:
        queries = [together]
    for query in queries:
        params = {"query": query, "site_id": site_id, "limit": limit, "cap": MAX_RANKED_ROWS + 1}
        rows = (await session.execute(_POSTGRES, params)).all()
        if rows:
            return [_passage(r, lexical_rank=i) for i, r in enumerate(rows, start=1)]
    return []


async def search_passages(
    session: AsyncSession,
    *,
    site_id: str,
    terms: list[str],
    limit: int = 5,
    site_rows: int | None = None,
) -> list[Passage]:
    """Lexical retrieval: the best `limit` chunks matching any of the terms. `site_rows`, the
    site's chunk count when known, helps choose how to search (see `_site_in_fts` and
    `_postgres_passages`)."""
    # Terms come from `knowledge.text.query_terms`: \w+ only, so quoting them is sufficient.
    if not terms:
        return []
    if session.get_bind().dialect.name == "sqlite":
        in_fts = await _site_in_fts(session, site_rows)
        query = await _sqlite_query(session, site_id, terms, in_fts=in_fts)
        stmt = _SQLITE if in_fts else _SQLITE_FILTERED_AFTER
        if query is None:
            return []
    else:
        return await _postgres_passages(session, site_id, terms, limit, site_rows)
    rows = await session.execute(stmt, {"query": query, "site_id": site_id, "limit": limit})
    return [_passage(r, lexical_rank=i) for i, r in enumerate(rows, start=1)]


async def passages_by_ids(session: AsyncSession, chunk_ids: list[int]) -> dict[int, Passage]:
    if not chunk_ids:
        return {}
    rows = await session.execute(_BY_IDS, {"ids": chunk_ids})
    return {int(r[0]): _passage(r) for r in rows}


async def knowledge_version(session: AsyncSession, site_id: str) -> str:
    """A token that changes whenever the site's documents change ("0": never changed)."""
    version = (await session.execute(_VERSION, {"site_id": site_id})).scalar_one_or_none()
    return str(version) if version is not None else "0"


# --- The vector index ---------------------------------------------------------------------------

_build_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _build_lock(site_id: str) -> asyncio.Lock:
    locks = _build_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(site_id, asyncio.Lock())


async def _build_index(
    session: AsyncSession, site_id: str, version: str, embedder: Embedder
) -> VectorIndex:
    size = embedder.dim * STORED_DTYPE.itemsize
    rows = (await session.execute(_VECTORS, {"site_id": site_id, "size": size})).all()
    stored = [(int(r[0]), bytes(r[1])) for r in rows if blob_fits(r[1], embedder.dim)]
    missing = [(int(r[0]), (r[2], r[3])) for r in rows if not blob_fits(r[1], embedder.dim)]

    def build() -> VectorIndex:
        parts = [from_blobs([b for _, b in stored], embedder.dim)]
        if missing:
            parts.append(chunk_vectors(embedder, [pair for _, pair in missing]))
        ids = [i for i, _ in stored] + [i for i, _ in missing]
        return VectorIndex.build(version, ids, np.concatenate(parts))

    return await asyncio.to_thread(build)


async def site_vector_index(
    session: AsyncSession,
    site_id: str,
    embedder: Embedder,
    *,
    cache: IndexCache = SITE_INDEXES,
) -> VectorIndex:
    """The site's vector index at its current knowledge version (built once per version).

    The version is read before the chunks, so an index can be labelled older than its data
    (rebuilt once more next time), never newer (which would keep it stale).
    """
    version = await knowledge_version(session, site_id)
    index = cache.get(site_id, version, embedder.dim)
    if index is not None:
        return index
    async with _build_lock(site_id):
        index = cache.get(site_id, version, embedder.dim)
        if index is None:
            index = await _build_index(session, site_id, version, embedder)
            cache.put(site_id, index)
    return index


async def _search(index: VectorIndex, query: NDArray[np.float32], k: int) -> list[VectorHit]:
    """The top k hits that are similar at all (a question of stop words only matches nothing)."""
    if len(index) <= INLINE_SEARCH_ROWS:
        hits = index.search(query, k)
    else:
        hits = await asyncio.to_thread(index.search, query, k)
    return [h for h in hits if h.similarity > 0]


async def vector_passages(
    session: AsyncSession,
    *,
    site_id: str,
    query_vector: NDArray[np.float32],
    embedder: Embedder,
    limit: int = 5,
) -> list[Passage]:
    """Vector retrieval alone: the `limit` chunks most similar to the question."""
    index = await site_vector_index(session, site_id, embedder)
    hits = await _search(index, query_vector, limit)
    found = await passages_by_ids(session, [h.chunk_id for h in hits])
    return [
        replace(found[h.chunk_id], score=h.similarity, vector_rank=i, similarity=h.similarity)
        for i, h in enumerate(hits, start=1)
        if h.chunk_id in found
    ]


async def hybrid_search(
    session: AsyncSession,
    *,
    site_id: str,
    terms: list[str],
    query_vector: NDArray[np.float32] | None,
    embedder: Embedder,
    limit: int = 5,
    candidates: int = CANDIDATES,
) -> list[Passage]:
    """Lexical and vector candidates fused by reciprocal rank; the best `limit`, each with its
    lexical and vector ranks and its similarity to the question. Without a question vector
    (no embedding model) this is the lexical ranking."""
    if query_vector is None:
        return await search_passages(session, site_id=site_id, terms=terms, limit=limit)
    index = await site_vector_index(session, site_id, embedder)
    # The vector search (a worker thread for large sites) overlaps the full-text query. It is
    # started first: SQLite statements run in the event loop (ADR 0022) without yielding, so a
    # search started second would wait for the whole full-text query.
    hits, lexical = await asyncio.gather(
        _search(index, query_vector, candidates),
        search_passages(
            session, site_id=site_id, terms=terms, limit=candidates, site_rows=len(index)
        ),
    )
    fused = reciprocal_rank_fusion(
        {"lexical": [p.chunk_id for p in lexical], "vector": [h.chunk_id for h in hits]}
    )[:limit]
    known = {p.chunk_id: p for p in lexical}
    known |= await passages_by_ids(session, [f.item for f in fused if f.item not in known])
    similarity = {h.chunk_id: h.similarity for h in hits}
    similarity |= index.similarities(
        query_vector, [f.item for f in fused if f.item not in similarity]
    )
    return [
        replace(
            known[f.item],
            score=f.score,
            lexical_rank=f.ranks.get("lexical"),
            vector_rank=f.ranks.get("vector"),
            similarity=similarity.get(f.item),
        )
        for f in fused
        if f.item in known
    ]

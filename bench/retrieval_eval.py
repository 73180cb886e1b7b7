"""Retrieval quality on FrontDesk's own documentation: recall@3, lexical vs vector vs hybrid.

What it measures: for each labelled question in `tests/fixtures/kb_questions.json`, whether one
of the sections that answer it (document source + heading) is among the top 3 passages that each
retrieval returns. The knowledge base is the demo site's (README.md and docs/*.md except the
decision records), indexed into a fresh SQLite database exactly as `frontdesk serve --demo` does.

* lexical: FTS5 bm25 over the question's content words (`search_passages`);
* vector: cosine similarity of WordLlama vectors (`vector_passages`);
* hybrid: both fused by reciprocal rank (`hybrid_search`), what the knowledge responder uses.

It also compares vector sizes (64/128/256 dimensions) and the stored precision (float16, as
stored, against float32): those variants are built in memory from the same chunks and put in the
index cache in place of the stored index.

    .venv/bin/python -m bench.retrieval_eval [--k 3] [--out bench/results/retrieval_eval.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.knowledge import do_index_document
from frontdesk.actions.sites import do_create_site
from frontdesk.config import load_settings
from frontdesk.db import Database
from frontdesk.demo_site import demo_documents
from frontdesk.knowledge.embed import Embedder, WordLlamaEmbedder, chunk_vectors, question_vector
from frontdesk.knowledge.ingest import read_document
from frontdesk.knowledge.text import query_terms
from frontdesk.knowledge.vectors import SITE_INDEXES, STORED_DTYPE, VectorIndex
from frontdesk.migrate import upgrade
from frontdesk.queries.knowledge import (
    Passage,
    hybrid_search,
    knowledge_version,
    search_passages,
    vector_passages,
)
from frontdesk.security.keys import SecretBox

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "tests" / "fixtures" / "kb_questions.json"
MODES = ("lexical", "vector", "hybrid")

Scope = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    expected: list[tuple[str, str]]  # (document source, heading)


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    raw = json.loads(path.read_text())["questions"]
    return [
        Question(q["id"], q["question"], [(e["source"], e["heading"]) for e in q["expected"]])
        for q in raw
    ]


def is_hit(passage: Passage, expected: list[tuple[str, str]]) -> bool:
    """The passage is one of the expected sections (its heading path ends with the heading)."""
    return any(
        passage.source == source
        and (passage.heading == heading or passage.heading.endswith(f" › {heading}"))
        for source, heading in expected
    )


async def retrieve(
    session: AsyncSession, mode: str, site_id: str, question: str, embedder: Embedder, k: int
) -> list[Passage]:
    terms = query_terms(question)
    if mode == "lexical":
        return await search_passages(session, site_id=site_id, terms=terms, limit=k)
    vector = question_vector(embedder, question)
    if mode == "vector":
        return await vector_passages(
            session, site_id=site_id, query_vector=vector, embedder=embedder, limit=k
        )
    return await hybrid_search(
        session, site_id=site_id, terms=terms, query_vector=vector, embedder=embedder, limit=k
    )


async def evaluate(
    scope: Scope,
    site_id: str,
    questions: list[Question],
    embedder: Embedder,
    *,
    k: int = 3,
    modes: tuple[str, ...] = MODES,
) -> dict[str, dict[str, Any]]:
    """recall@k per mode, with the ids of the questions missed."""
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        missed: list[str] = []
        async with scope() as session:
            for q in questions:
                passages = await retrieve(session, mode, site_id, q.question, embedder, k)
                if not any(is_hit(p, q.expected) for p in passages[:k]):
                    missed.append(q.id)
        recall = 1 - len(missed) / len(questions)
        results[mode] = {"recall_at_k": round(recall, 4), "missed": missed}
    return results


async def index_demo_docs(db: Database, site_id: str) -> int:
    chunks = 0
    for path, source in demo_documents():
        async with db.session_scope() as session:
            result = await do_index_document(
                session, site_id=site_id, document=read_document(path, source=source)
            )
            chunks += result.document.chunk_count
    return chunks


async def _variant_index(
    scope: Scope, site_id: str, embedder: Embedder, dtype: np.dtype[Any]
) -> VectorIndex:
    """An index of the site's chunks embedded by `embedder`, rounded through `dtype`."""
    async with scope() as session:
        version = await knowledge_version(session, site_id)
        rows = (
            await session.execute(
                text("SELECT id, heading, text FROM knowledge_chunks WHERE site_id = :s"),
                {"s": site_id},
            )
        ).all()
    matrix = chunk_vectors(embedder, [(r[1], r[2]) for r in rows])
    matrix = matrix.astype(dtype).astype(np.float32)
    return VectorIndex.build(version, [int(r[0]) for r in rows], matrix)


async def compare_variants(
    scope: Scope, site_id: str, questions: list[Question], k: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for dim in (64, 128, 256):
        embedder = WordLlamaEmbedder(dim)
        for dtype in (STORED_DTYPE, np.dtype(np.float32)):
            SITE_INDEXES.put(site_id, await _variant_index(scope, site_id, embedder, dtype))
            result = await evaluate(
                scope, site_id, questions, embedder, k=k, modes=("vector", "hybrid")
            )
            rows.append(
                {
                    "dim": dim,
                    "dtype": "float16" if dtype == STORED_DTYPE else "float32",
                    "vector": result["vector"]["recall_at_k"],
                    "hybrid": result["hybrid"]["recall_at_k"],
                }
            )
    SITE_INDEXES.invalidate(site_id)
    return rows


async def run(k: int) -> dict[str, Any]:
    questions = load_questions()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), secret_key="retrieval-eval-" + "x" * 32)
        db = Database(settings)
        try:
            await upgrade(db)
            async with db.session_scope() as session:
                created = await do_create_site(
                    session, SecretBox(settings.server_key), name="Eval", origins=[]
                )
            site_id = created.site.id
            chunks = await index_demo_docs(db, site_id)
            SITE_INDEXES.invalidate(site_id)
            main = await evaluate(db.read_scope, site_id, questions, WordLlamaEmbedder(), k=k)
            variants = await compare_variants(db.read_scope, site_id, questions, k)
        finally:
            await db.dispose()
    return {
        "benchmark": "retrieval_eval",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu_count": _cpus()},
        "questions": len(questions),
        "documents": len(demo_documents()),
        "chunks": chunks,
        "k": k,
        "stored": {"dim": WordLlamaEmbedder().dim, "dtype": str(STORED_DTYPE)},
        "recall": main,
        "variants": variants,
    }


def _cpus() -> int | None:
    import os

    return os.cpu_count()


def print_report(report: dict[str, Any]) -> None:
    k = report["k"]
    print(
        f"{report['questions']} questions, {report['documents']} documents, "
        f"{report['chunks']} chunks"
    )
    print(f"\n{'retrieval':<10} recall@{k}  missed")
    for mode, result in report["recall"].items():
        print(f"{mode:<10} {result['recall_at_k']:>8.3f}  {', '.join(result['missed']) or '-'}")
    print(f"\n{'dim':>4} {'dtype':<8} {'vector':>7} {'hybrid':>7}")
    for row in report["variants"]:
        print(f"{row['dim']:>4} {row['dtype']:<8} {row['vector']:>7.3f} {row['hybrid']:>7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "retrieval_eval.json"
    )
    args = parser.parse_args()
    report = asyncio.run(run(args.k))
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()

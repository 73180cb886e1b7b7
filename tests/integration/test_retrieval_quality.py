"""Retrieval quality on FrontDesk's own documentation (the demo site's knowledge base).

The documents are a snapshot (tests/fixtures/kb_docs) taken when the labels were last checked, so
that editing the live docs cannot turn this test red; `python -m bench.retrieval_eval` measures the
live docs, and when they move a labelled section, refresh the snapshot and the labels together.

The labelled questions (tests/fixtures/kb_questions.json) name the sections that answer them;
hybrid retrieval must put one of them in its top 3 for at least 90% of the questions. Lexical-only
and vector-only recall are measured beside it (bench/retrieval_eval.py prints all three). When a
documentation edit moves or renames a labelled section, update the label with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.retrieval_eval import evaluate, load_questions
from frontdesk.actions.knowledge import do_index_document
from frontdesk.knowledge.embed import default_embedder
from frontdesk.knowledge.ingest import read_document
from frontdesk.services import Services
from tests.conftest import SiteInfo

SNAPSHOT = Path(__file__).resolve().parent.parent / "fixtures" / "kb_docs"


def snapshot_documents() -> list[tuple[Path, str]]:
    return sorted((path, path.relative_to(SNAPSHOT).as_posix()) for path in SNAPSHOT.rglob("*.md"))


def test_the_labelled_set_is_about_the_shipped_docs() -> None:
    questions = load_questions()
    sources = {source for _, source in snapshot_documents()}
    assert len(questions) >= 30
    assert len({q.id for q in questions}) == len(questions)
    for question in questions:
        assert question.expected, question.id
        assert all(source in sources for source, _ in question.expected), question.id


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_hybrid_recall_at_3(services: Services, site: SiteInfo) -> None:
    for path, source in snapshot_documents():
        async with services.db.session_scope() as session:
            await do_index_document(
                session, site_id=site.id, document=read_document(path, source=source)
            )
    results = await evaluate(services.db.read_scope, site.id, load_questions(), default_embedder())
    recall = {mode: result["recall_at_k"] for mode, result in results.items()}
    print(f"recall@3: {recall}")
    assert recall["hybrid"] >= 0.9, results["hybrid"]["missed"]
    assert recall["hybrid"] >= max(recall["lexical"], recall["vector"]) - 0.05

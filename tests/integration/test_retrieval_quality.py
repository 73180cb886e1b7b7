"""Retrieval quality on FrontDesk's own documentation (the demo site's knowledge base).

The labelled questions (tests/fixtures/kb_questions.json) name the sections that answer them;
hybrid retrieval must put one of them in its top 3 for at least 90% of the questions. Lexical-only
and vector-only recall are measured beside it (bench/retrieval_eval.py prints all three). When a
documentation edit moves or renames a labelled section, update the label with it.
"""

from __future__ import annotations

import pytest

from bench.retrieval_eval import evaluate, index_demo_docs, load_questions
from frontdesk.demo_site import demo_documents
from frontdesk.knowledge.embed import default_embedder
from frontdesk.services import Services
from tests.conftest import SiteInfo


def test_the_labelled_set_is_about_the_shipped_docs() -> None:
    questions = load_questions()
    sources = {source for _, source in demo_documents()}
    assert len(questions) >= 30
    assert len({q.id for q in questions}) == len(questions)
    for question in questions:
        assert question.expected, question.id
        assert all(source in sources for source, _ in question.expected), question.id


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_hybrid_recall_at_3(services: Services, site: SiteInfo) -> None:
    await index_demo_docs(services.db, site.id)
    results = await evaluate(services.db.read_scope, site.id, load_questions(), default_embedder())
    recall = {mode: result["recall_at_k"] for mode, result in results.items()}
    print(f"recall@3: {recall}")
    assert recall["hybrid"] >= 0.9, results["hybrid"]["missed"]
    assert recall["hybrid"] >= max(recall["lexical"], recall["vector"]) - 0.05

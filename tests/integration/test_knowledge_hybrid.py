"""The knowledge base in the database, on SQLite and PostgreSQL: stored vectors, the knowledge
version and the vector index it invalidates, deduplication, PDF ingestion, hybrid retrieval and
the responder's relevance gate in both directions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text, update

from frontdesk.actions.knowledge import do_delete_document, do_index_document
from frontdesk.knowledge.embed import (
    EmbedderUnavailable,
    Vectors,
    default_embedder,
    question_vector,
)
from frontdesk.knowledge.ingest import DocumentText, parse_document, read_document
from frontdesk.knowledge.text import query_terms
from frontdesk.knowledge.vectors import STORED_DTYPE
from frontdesk.models import KnowledgeChunk, KnowledgeDocument
from frontdesk.queries import knowledge as knowledge_queries
from frontdesk.queries.knowledge import hybrid_search, knowledge_version, site_vector_index
from frontdesk.responders.base import AnswerRequest, FinalAnswer
from frontdesk.responders.config import KnowledgeConfig
from frontdesk.responders.knowledge import KnowledgeResponder
from frontdesk.services import Services
from tests.conftest import SiteInfo
from tests.pdfs import make_pdf


def _markdown(source: str, text: str) -> DocumentText:
    return parse_document(text, content_type="text/markdown", source=source, fallback_title=source)


async def _add_fixture_docs(services: Services, site_id: str, docs_dir: Path) -> None:
    for path in sorted(docs_dir.glob("*.md")):
        async with services.db.session_scope() as session:
            await do_index_document(session, site_id=site_id, document=read_document(path))


async def _version(services: Services, site_id: str) -> str:
    async with services.db.read_scope() as session:
        return await knowledge_version(session, site_id)


async def _ask(services: Services, site_id: str, question: str) -> FinalAnswer:
    responder = KnowledgeResponder(KnowledgeConfig(kind="knowledge"), services.db.read_scope)
    request = AnswerRequest(site_id, "conv_x", "vis_x", question, [], "en")
    items = [item async for item in responder.answer(request)]
    final = items[-1]
    assert isinstance(final, FinalAnswer)
    return final


async def test_chunks_are_stored_with_vectors(
    services: Services, site: SiteInfo, docs_dir: Path
) -> None:
    await _add_fixture_docs(services, site.id, docs_dir)
    async with services.db.read_scope() as session:
        blobs = (await session.execute(select(KnowledgeChunk.embedding))).scalars().all()
    assert len(blobs) == 4
    size = default_embedder().dim * STORED_DTYPE.itemsize
    assert all(blob is not None and len(blob) == size for blob in blobs)


async def test_every_change_replaces_the_knowledge_version(
    services: Services, site: SiteInfo
) -> None:
    assert await _version(services, site.id) == "0"
    doc = _markdown("faq.md", "# FAQ\n\n## Hours\n\nWe open at nine.")
    async with services.db.session_scope() as session:
        first = await do_index_document(session, site_id=site.id, document=doc)
    assert first.status == "added"
    added = await _version(services, site.id)
    async with services.db.session_scope() as session:
        again = await do_index_document(session, site_id=site.id, document=doc)
    assert again.status == "unchanged" and await _version(services, site.id) == added
    changed = _markdown("faq.md", "# FAQ\n\n## Hours\n\nWe open at ten.")
    async with services.db.session_scope() as session:
        updated = await do_index_document(session, site_id=site.id, document=changed)
    assert updated.status == "updated" and updated.document.id == first.document.id
    assert await _version(services, site.id) not in ("0", added)
    before_delete = await _version(services, site.id)
    async with services.db.session_scope() as session:
        row = await session.get(KnowledgeDocument, first.document.id)
        assert row is not None
        await do_delete_document(session, row, actor=None)
    assert await _version(services, site.id) != before_delete


async def test_the_vector_index_follows_the_knowledge_version(
    services: Services, site: SiteInfo
) -> None:
    embedder = default_embedder()
    async with services.db.session_scope() as session:
        hours = await do_index_document(
            session, site_id=site.id, document=_markdown("a.md", "# A\n\nWe open at nine.")
        )
    async with services.db.read_scope() as session:
        first = await site_vector_index(session, site.id, embedder)
        assert await site_vector_index(session, site.id, embedder) is first  # cached
    assert len(first) == 1
    async with services.db.session_scope() as session:
        await do_index_document(
            session, site_id=site.id, document=_markdown("b.md", "# B\n\nParking is free.")
        )
    async with services.db.read_scope() as session:
        second = await site_vector_index(session, site.id, embedder)
    assert second is not first and len(second) == 2
    async with services.db.session_scope() as session:
        row = await session.get(KnowledgeDocument, hours.document.id)
        assert row is not None
        await do_delete_document(session, row, actor=None)
    async with services.db.read_scope() as session:
        third = await site_vector_index(session, site.id, embedder)
        remaining = (await session.execute(select(KnowledgeChunk.id))).scalars().all()
    assert list(third.chunk_ids) == remaining


async def test_chunks_without_vectors_are_embedded_when_the_index_is_built(
    services: Services, site: SiteInfo, docs_dir: Path
) -> None:
    await _add_fixture_docs(services, site.id, docs_dir)
    embedder = default_embedder()
    async with services.db.read_scope() as session:
        stored = await site_vector_index(session, site.id, embedder)
    async with services.db.session_scope() as session:
        await session.execute(update(KnowledgeChunk).values(embedding=None))
        await session.execute(  # a change the app did not make: force a new version
            text("UPDATE knowledge_state SET version = 'manual' WHERE site_id = :s"),
            {"s": site.id},
        )
    async with services.db.read_scope() as session:
        rebuilt = await site_vector_index(session, site.id, embedder)
        # Storing vectors must not disturb the full-text index (SQLite triggers).
        lexical = await hybrid_search(
            session, site_id=site.id, terms=["password"], query_vector=None, embedder=embedder
        )
    np.testing.assert_allclose(rebuilt.matrix, stored.matrix, atol=2e-3)
    assert lexical and lexical[0].heading == "Your account › Password reset"


async def test_re_adding_an_unchanged_document_stores_missing_vectors(
    services: Services, site: SiteInfo, docs_dir: Path
) -> None:
    await _add_fixture_docs(services, site.id, docs_dir)
    async with services.db.session_scope() as session:
        await session.execute(update(KnowledgeChunk).values(embedding=None))
    await _add_fixture_docs(services, site.id, docs_dir)
    async with services.db.read_scope() as session:
        missing = await session.scalar(
            select(func.count()).where(KnowledgeChunk.embedding.is_(None))
        )
    assert missing == 0


async def test_duplicates_are_not_indexed_twice(services: Services, site: SiteInfo) -> None:
    text_ = "# Hours\n\nWe open at nine and close at five."
    async with services.db.session_scope() as session:
        original = await do_index_document(
            session, site_id=site.id, document=_markdown("hours.md", text_)
        )
        copy = await do_index_document(
            session, site_id=site.id, document=_markdown("copy-of-hours.md", text_)
        )
    assert copy.status == "duplicate" and copy.document.id == original.document.id
    async with services.db.session_scope() as session:
        other = await do_index_document(
            session, site_id=site.id, document=_markdown("other.md", "# Other\n\nParking.")
        )
        # A source whose new text duplicates another document: its old version goes.
        became = await do_index_document(
            session, site_id=site.id, document=_markdown("other.md", text_)
        )
    assert other.status == "added" and became.status == "duplicate"
    async with services.db.read_scope() as session:
        sources = (await session.execute(select(KnowledgeDocument.source))).scalars().all()
        chunks = await session.scalar(select(func.count()).select_from(KnowledgeChunk))
    assert sources == ["hours.md"] and chunks == 1


async def test_pdf_documents_are_searchable(
    services: Services, site: SiteInfo, tmp_path: Path
) -> None:
    path = tmp_path / "kettle.pdf"
    path.write_bytes(
        make_pdf(
            [
                ["Safety first: never open the base while it is plugged in."],
                ["The kettle is covered by a warranty for two years from the date of", "purchase."],
            ],
            title="Kettle manual",
        )
    )
    async with services.db.session_scope() as session:
        result = await do_index_document(
            session, site_id=site.id, document=read_document(path, source="manuals/kettle.pdf")
        )
    assert result.status == "added" and result.document.chunk_count == 2
    answer = await _ask(services, site.id, "How long is the warranty?")
    assert "two years" in answer.text
    assert answer.citations[0]["title"] == "Kettle manual › Page 2"


async def test_hybrid_passages_record_both_ranks(
    services: Services, site: SiteInfo, docs_dir: Path
) -> None:
    await _add_fixture_docs(services, site.id, docs_dir)
    embedder = default_embedder()
    question = "How long does express delivery take?"
    async with services.db.read_scope() as session:
        passages = await hybrid_search(
            session,
            site_id=site.id,
            terms=query_terms(question),
            query_vector=question_vector(embedder, question),
            embedder=embedder,
        )
        paraphrase = "Can I send something back?"  # no word in common with the answer
        vector_only = await hybrid_search(
            session,
            site_id=site.id,
            terms=query_terms(paraphrase),
            query_vector=question_vector(embedder, paraphrase),
            embedder=embedder,
        )
    top = passages[0]
    assert top.heading == "Shipping › Delivery times"
    assert top.lexical_rank == 1 and top.vector_rank is not None
    assert top.similarity is not None and top.similarity > 0.3
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert vector_only[0].heading == "Shipping › Returns"
    assert vector_only[0].lexical_rank is None and vector_only[0].vector_rank == 1


@pytest.mark.parametrize(
    ("question", "section", "words"),
    [
        ("How long does express delivery take?", "Shipping › Delivery times", "next business day"),
        ("Can I send something back?", "Shipping › Returns", "thirty days"),  # no shared word
        ("I forgot my login, what now?", "Your account › Password reset", "Forgot password"),
    ],
)
async def test_relevant_questions_are_answered(
    services: Services, site: SiteInfo, docs_dir: Path, question: str, section: str, words: str
) -> None:
    await _add_fixture_docs(services, site.id, docs_dir)
    answer = await _ask(services, site.id, question)
    assert answer.meta["answered"] is True, answer.text
    assert words in answer.text
    assert answer.citations[0]["title"] == section


@pytest.mark.parametrize(
    "question",
    ["What is the weather on Mars?", "Who won the world cup?", "Do you sell shoes?", "hello"],
)
async def test_unrelated_questions_get_i_dont_know(
    services: Services, site: SiteInfo, docs_dir: Path, question: str
) -> None:
    await _add_fixture_docs(services, site.id, docs_dir)
    answer = await _ask(services, site.id, question)
    assert answer.meta["answered"] is False and not answer.citations


class _NoModel:
    dim = 256

    def embed(self, texts: Sequence[str]) -> Vectors:
        raise EmbedderUnavailable("no model in this test")


async def test_without_a_model_retrieval_is_lexical(
    services: Services, site: SiteInfo, docs_dir: Path
) -> None:
    await _add_fixture_docs(services, site.id, docs_dir)
    responder = KnowledgeResponder(
        KnowledgeConfig(kind="knowledge"), services.db.read_scope, embedder=_NoModel()
    )
    request = AnswerRequest(site.id, "c", "v", "How do I reset my password?", [], "en")
    final = [item async for item in responder.answer(request)][-1]
    assert isinstance(final, FinalAnswer) and final.meta["answered"] is True
    assert "Forgot password" in final.text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_ranks_few_rows_when_terms_are_common(
    services: Services, site: SiteInfo, docs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add_fixture_docs(services, site.id, docs_dir)
    monkeypatch.setattr(knowledge_queries, "MAX_RANKED_ROWS", 2)  # "days" is in 3 chunks
    async with services.db.read_scope() as session:
        rare = await knowledge_queries.search_passages(
            session, site_id=site.id, terms=["days", "express"], limit=5
        )
        common = await knowledge_queries.search_passages(
            session, site_id=site.id, terms=["days"], limit=5
        )
    assert [p.heading for p in rare] == ["Shipping › Delivery times"]
    assert common == []  # only very common words: left to the vector ranking
    monkeypatch.setattr(knowledge_queries, "MAX_RANKED_ROWS", 1)
    async with services.db.read_scope() as session:
        both = await knowledge_queries.search_passages(
            session, site_id=site.id, terms=["account", "days"], limit=5
        )
    assert [p.heading for p in both] == ["Your account › Deleting an account"]  # all terms


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_ranks_few_rows_when_terms_are_common(
    services: Services, site: SiteInfo, docs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add_fixture_docs(services, site.id, docs_dir)
    monkeypatch.setattr(knowledge_queries, "MAX_RANKED_ROWS", 2)  # "days" is in 3 chunks
    async with services.db.read_scope() as session:
        both = await knowledge_queries.search_passages(
            session, site_id=site.id, terms=["days", "express"], limit=5
        )
        common = await knowledge_queries.search_passages(
            session, site_id=site.id, terms=["days"], limit=5
        )
        few = await knowledge_queries.search_passages(
            session, site_id=site.id, terms=["express", "password"], limit=5
        )
    assert [p.heading for p in both] == ["Shipping › Delivery times"]  # all the terms
    assert common == []  # only a common word: left to the vector ranking
    assert {p.heading for p in few} == {
        "Shipping › Delivery times",
        "Your account › Password reset",
    }

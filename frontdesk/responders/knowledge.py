"""The offline knowledge responder: answers from the site's knowledge base, with citations.

Retrieval is hybrid (`queries.knowledge.hybrid_search`): the database's full-text ranking and the
WordLlama vector ranking fused by reciprocal rank. A passage is relevant when it covers enough of
the question's words (`min_coverage`) or is close enough in meaning (cosine similarity at least
`min_similarity`), so a paraphrase that shares no word with the answer can still be answered while
an unrelated question matches nothing. The answer is extractive: the sentences of the relevant
passages that best match the question (its words, and its meaning), in the order they appear, each
passage cited. When nothing is relevant, it says so honestly and offers a person instead of
guessing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.knowledge.embed import (
    Embedder,
    EmbedderUnavailable,
    content_words,
    default_embedder,
    embed_question,
)
from frontdesk.knowledge.text import coverage, plain_text, query_terms, sentences, stem, stems
from frontdesk.queries.knowledge import Passage, hybrid_search
from frontdesk.responders.base import AnswerRequest, Delta, FinalAnswer
from frontdesk.responders.config import KnowledgeConfig

NO_ANSWER = {
    "en": (
        "I couldn't find that in this site's knowledge base. "
        "Leave your email and a person will get back to you."
    ),
    "ru": (
        "Я не нашёл ответа в базе знаний этого сайта. "
        "Оставьте ваш email, и сотрудник свяжется с вами."
    ),
}
MAX_ANSWER_CHARS = 700
# Cosine similarity (question vs passage) that makes a passage relevant without shared words.
# On FrontDesk's docs, unrelated questions stay below 0.26 and paraphrases reach 0.4 to 0.6.
DEFAULT_MIN_SIMILARITY = 0.35
SENTENCE_SIMILARITY_WEIGHT = 2.0  # a sentence's similarity of 0.5 weighs one question word
RANK_PENALTY = 0.25  # per rank of the passage a sentence comes from
POSITION_PENALTY = 0.1  # per sentence before it in its passage: a section leads with its point
MAX_POSITION_PENALTY = 0.5
SENTENCE_FLOOR = 0.7  # share of min_similarity a sentence without question words needs
RELATIVE_CUTOFF = 0.5  # sentences scoring under this share of the best one are left out

ReadScope = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str
    passage: Passage
    rank: int  # of its passage among the relevant ones
    position: int  # within its passage


def _citation(passage: Passage) -> dict[str, Any]:
    snippet = plain_text(passage.text).replace("\n", " ")
    title = passage.title if passage.heading in ("", passage.title) else passage.heading
    citation: dict[str, Any] = {"title": title, "snippet": snippet[:240]}
    if passage.url:
        citation["url"] = passage.url
    return citation


def is_relevant(
    passage: Passage, terms: list[str], *, min_coverage: float, min_similarity: float
) -> bool:
    """Relevant: covers enough of the question's words, or is close enough in meaning."""
    if passage.similarity is not None and passage.similarity >= min_similarity:
        return True
    return bool(terms) and coverage(terms, passage.heading + " " + passage.text) >= min_coverage


def candidate_sentences(passages: list[Passage]) -> list[Sentence]:
    """The prose sentences of the passages, each once (overlapping chunks repeat some)."""
    seen: set[str] = set()
    out: list[Sentence] = []
    for rank, passage in enumerate(passages):
        for position, sentence in enumerate(sentences(plain_text(passage.text))):
            if sentence not in seen:
                seen.add(sentence)
                out.append(Sentence(sentence, passage, rank, position))
    return out


def _score_sentences(
    terms: list[str], candidates: list[Sentence], similarities: list[float], min_similarity: float
) -> list[tuple[float, Sentence]]:
    """The eligible sentences with their scores (see `compose_answer`)."""
    wanted = {stem(t) for t in terms}
    scored: list[tuple[float, Sentence]] = []
    for sentence, similarity in zip(candidates, similarities, strict=True):
        hits = len(wanted & stems(sentence.text))
        score = (
            hits
            + SENTENCE_SIMILARITY_WEIGHT * similarity
            - sentence.rank * RANK_PENALTY
            - min(sentence.position * POSITION_PENALTY, MAX_POSITION_PENALTY)
        )
        if hits or similarity >= min_similarity * SENTENCE_FLOOR:
            scored.append((score, sentence))
    return scored


def compose_answer(
    terms: list[str],
    candidates: list[Sentence],
    similarities: list[float],
    max_sentences: int,
    *,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> tuple[str, list[Passage]]:
    """Pick the sentences that best match the question; return them and the passages used.

    A sentence is eligible when it contains a question word or is close in meaning to the
    question (sentences are short, so the bar is lower than for passages); if none is, the best
    sentence of the first passage still answers (that passage passed the relevance gate).
    Scores: question words + weighted similarity, less a little per passage rank and per
    position in the passage; sentences under half the best score are left out (a weak second
    sentence dilutes a good answer); the chosen ones keep their document order.
    """
    scored = _score_sentences(terms, candidates, similarities, min_similarity)
    if not scored:
        firsts = [(s, c) for s, c in zip(similarities, candidates, strict=True) if c.rank == 0]
        scored = [max(firsts, key=lambda f: f[0])] if firsts else []
    scored.sort(key=lambda s: (-s[0], s[1].rank, s[1].position))
    cutoff = min(scored[0][0], scored[0][0] * RELATIVE_CUTOFF) if scored else 0.0
    best = [s for score, s in scored[:max_sentences] if score >= cutoff]
    chosen = sorted(best, key=lambda s: (s.rank, s.position))
    text, used = "", []
    for sentence in chosen:
        if len(text) + len(sentence.text) > MAX_ANSWER_CHARS and text:
            break
        text = f"{text} {sentence.text}".strip()
        if sentence.passage not in used:
            used.append(sentence.passage)
    return text, used


def _sentence_similarities(
    embedder: Embedder, question: NDArray[np.float32] | None, candidates: list[Sentence]
) -> list[float]:
    if question is None or not candidates:
        return [0.0] * len(candidates)
    try:
        vectors = embedder.embed([content_words(c.text) for c in candidates])
    except EmbedderUnavailable:
        return [0.0] * len(candidates)
    return [float(s) for s in vectors @ question]


class KnowledgeResponder:
    name = "knowledge"

    def __init__(
        self, config: KnowledgeConfig, read_scope: ReadScope, embedder: Embedder | None = None
    ) -> None:
        self.config = config
        self.read_scope = read_scope
        self.embedder = embedder or default_embedder()
        # `min_similarity` joins KnowledgeConfig with the responders work; until then, default.
        self.min_similarity = float(getattr(config, "min_similarity", DEFAULT_MIN_SIMILARITY))

    async def _relevant(
        self, request: AnswerRequest, terms: list[str], question: NDArray[np.float32] | None
    ) -> list[Passage]:
        async with self.read_scope() as session:
            passages = await hybrid_search(
                session,
                site_id=request.site_id,
                terms=terms,
                query_vector=question,
                embedder=self.embedder,
            )
        return [
            p
            for p in passages
            if is_relevant(
                p,
                terms,
                min_coverage=self.config.min_coverage,
                min_similarity=self.min_similarity,
            )
        ]

    async def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]:
        terms = query_terms(request.question)
        question = await embed_question(self.embedder, request.question)
        relevant = await self._relevant(request, terms, question)
        candidates = candidate_sentences(relevant)
        similarities = await asyncio.to_thread(
            _sentence_similarities, self.embedder, question, candidates
        )
        text, used = compose_answer(
            terms,
            candidates,
            similarities,
            self.config.max_sentences,
            min_similarity=self.min_similarity,
        )
        if not text:
            reply = self.config.no_answer or NO_ANSWER.get(request.locale, NO_ANSWER["en"])
            yield Delta(reply)
            yield FinalAnswer(reply, meta={"responder": self.name, "answered": False})
            return
        for sentence in sentences(text) or [text]:
            yield Delta(sentence + " ")
        yield FinalAnswer(
            text,
            citations=[_citation(p) for p in used],
            meta={"responder": self.name, "answered": True},
        )

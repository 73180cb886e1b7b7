"""The offline knowledge responder: answers from the site's knowledge base, with citations.

Retrieval is lexical (the database's full-text index). The answer is extractive: the sentences of
the best passages that cover most of the question, in the order they appear, each passage cited.
When no passage covers enough of the question (`min_coverage`), it says so honestly and offers a
person instead of guessing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.knowledge.text import coverage, plain_text, query_terms, sentences, stem, stems
from frontdesk.queries.knowledge import Passage, search_passages
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

ReadScope = Callable[[], AbstractAsyncContextManager[AsyncSession]]


def _citation(passage: Passage) -> dict[str, Any]:
    snippet = plain_text(passage.text).replace("\n", " ")
    title = passage.title if passage.heading in ("", passage.title) else passage.heading
    citation: dict[str, Any] = {"title": title, "snippet": snippet[:240]}
    if passage.url:
        citation["url"] = passage.url
    return citation


def compose_answer(
    terms: list[str], passages: list[Passage], max_sentences: int
) -> tuple[str, list[Passage]]:
    """Pick the sentences that best cover the question; return them and the passages used."""
    wanted = {stem(t) for t in terms}
    scored: list[tuple[float, int, int, str, Passage]] = []
    for rank, passage in enumerate(passages):
        for position, sentence in enumerate(sentences(plain_text(passage.text))):
            hits = len(wanted & stems(sentence))
            if hits:
                # Earlier passages and fuller coverage first; ties keep document order.
                scored.append((hits - rank * 0.25, rank, position, sentence, passage))
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    chosen = sorted(scored[:max_sentences], key=lambda s: (s[1], s[2]))
    text, used = "", []
    for _, _, _, sentence, passage in chosen:
        if len(text) + len(sentence) > MAX_ANSWER_CHARS and text:
            break
        text = f"{text} {sentence}".strip()
        if passage not in used:
            used.append(passage)
    return text, used


class KnowledgeResponder:
    name = "knowledge"

    def __init__(self, config: KnowledgeConfig, read_scope: ReadScope) -> None:
        self.config = config
        self.read_scope = read_scope

    async def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]:
        terms = query_terms(request.question)
        async with self.read_scope() as session:
            passages = await search_passages(session, site_id=request.site_id, terms=terms)
        relevant = [
            p
            for p in passages
            if coverage(terms, p.heading + " " + p.text) >= self.config.min_coverage
        ]
        text, used = compose_answer(terms, relevant, self.config.max_sentences)
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

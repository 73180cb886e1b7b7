"""The knowledge responder's relevance gate and sentence selection, without a database."""

from __future__ import annotations

from frontdesk.queries.knowledge import Passage
from frontdesk.responders.knowledge import candidate_sentences, compose_answer, is_relevant


def _passage(text: str, *, similarity: float | None = None, heading: str = "H") -> Passage:
    return Passage(
        chunk_id=hash(text) % 10_000,
        document_id="doc_1",
        title="T",
        heading=heading,
        text=text,
        url=None,
        score=0.0,
        similarity=similarity,
    )


def test_relevant_by_words_or_by_meaning() -> None:
    terms = ["return", "parcel"]
    shared = _passage("You can return a parcel within thirty days.", similarity=0.1)
    close = _passage("Send it back within a month.", similarity=0.5)
    unrelated = _passage("Mars has dust storms.", similarity=0.1)
    gate = {"min_coverage": 0.5, "min_similarity": 0.35}
    assert is_relevant(shared, terms, **gate)
    assert is_relevant(close, terms, **gate)
    assert not is_relevant(unrelated, terms, **gate)
    assert not is_relevant(_passage("Anything.", similarity=None), [], **gate)


def test_overlapping_chunks_do_not_repeat_sentences() -> None:
    first = _passage("Orders ship at noon. Express costs twelve euros.")
    second = _passage("Express costs twelve euros. Returns take thirty days.")
    texts = [s.text for s in candidate_sentences([first, second])]
    assert texts == [
        "Orders ship at noon.",
        "Express costs twelve euros.",
        "Returns take thirty days.",
    ]


def test_weak_sentences_are_left_out_and_order_is_kept() -> None:
    passage = _passage(
        "Express delivery arrives the next business day. "
        "Standard delivery takes three to five business days. "
        "Our offices are in Berlin."
    )
    candidates = candidate_sentences([passage])
    text, used = compose_answer(["express", "delivery"], candidates, [0.5, 0.1, 0.0], 3)
    assert text == "Express delivery arrives the next business day."
    assert used == [passage]


def test_a_relevant_passage_always_gives_a_sentence() -> None:
    # No question word, low similarities, low ranks: the best sentence of the first passage.
    passages = [_passage("Send it back within a month. Keep the receipt.", similarity=0.5)]
    candidates = candidate_sentences(passages)
    text, _ = compose_answer(["return"], candidates, [0.2, 0.1], 3)
    assert text == "Send it back within a month."
    assert compose_answer(["return"], [], [], 3) == ("", [])

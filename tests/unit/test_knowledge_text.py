from __future__ import annotations

from frontdesk.knowledge.chunking import chunk_markdown
from frontdesk.knowledge.ingest import parse_document
from frontdesk.knowledge.text import coverage, plain_text, query_terms, sentences


def test_query_terms_drop_stopwords_and_duplicates() -> None:
    assert query_terms("How do I reset my password? Password!") == ["reset", "password"]
    assert query_terms('"; DROP TABLE x; --') == ["drop", "table"]


def test_coverage_uses_stems() -> None:
    assert coverage(["returns", "items"], "You can return any item.") == 1.0
    assert coverage(["weather", "mars"], "Shipping takes days.") == 0.0


def test_chunks_follow_headings() -> None:
    text = (
        "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n```\n# not a heading\n```\n\n## Use\n\nChat."
    )
    chunks = chunk_markdown(text, title="Guide")
    assert [c.heading for c in chunks] == ["Guide", "Guide › Install", "Guide › Use"]
    assert "# not a heading" in chunks[1].text


def test_long_sections_are_split() -> None:
    text = "# T\n\n" + "\n\n".join("word " * 60 for _ in range(10))
    chunks = chunk_markdown(text, title="T", max_chars=500)
    assert len(chunks) > 3 and all(len(c.text) <= 500 for c in chunks)


def test_plain_text_and_sentences() -> None:
    prose = plain_text(
        "## Title\n\nSee [the docs](https://x). It **works** well!\n\n```py\ncode\n```"
    )
    assert "https://x" not in prose and "code" not in prose
    assert sentences(prose) == ["See the docs.", "It works well!"]


def test_html_documents_become_markdown() -> None:
    doc = parse_document(
        "<html><head><title>Help</title><script>evil()</script></head>"
        "<body><h2>Returns</h2><p>Thirty days.</p></body></html>",
        content_type="text/html",
        source="help.html",
        fallback_title="x",
    )
    assert doc.title == "Help"
    assert "evil" not in doc.text
    assert "## Returns" in doc.text


def test_hard_wrapped_paragraphs_and_identifiers() -> None:
    prose = plain_text(
        "Set `min_coverage` to a\nlower value when answers\nare too rare.\n\n"
        "- one item\n- two items"
    )
    assert prose.splitlines() == [
        "Set min_coverage to a lower value when answers are too rare.",
        "one item",
        "two items",
    ]


def test_code_blocks_stay_whole_and_never_leak() -> None:
    code = '```json\n{"kind": "knowledge"}\n\n{"more": 1}\n```'
    text = "# T\n\n" + "prose " * 50 + "\n\n" + code + "\n\nAfter the code."
    chunks = chunk_markdown(text, title="T", max_chars=320)
    assert any(code in c.text for c in chunks)
    assert all("kind" not in plain_text(c.text) for c in chunks)
    assert "kind" not in plain_text('Intro.\n\n```json\n{"kind": 1}')  # cut-off block

"""Reading documents (HTML main text, PDF) and chunking with overlap."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from frontdesk.knowledge import ingest
from frontdesk.knowledge.chunking import chunk_markdown
from frontdesk.knowledge.ingest import (
    INDEX_FORMAT,
    UnsupportedDocument,
    parse_document,
    parse_pdf,
    read_document,
    text_checksum,
)
from frontdesk.knowledge.text import plain_text
from tests.pdfs import make_pdf


def _sentences(n: int, word: str) -> str:
    return " ".join(
        f"{word.title()} sentence number {i} says something about {word}." for i in range(n)
    )


def test_chunks_of_a_long_section_overlap_by_a_sentence() -> None:
    text = "# T\n\n" + "\n\n".join(_sentences(4, f"topic{i}") for i in range(6))
    chunks = chunk_markdown(text, title="T", max_chars=500)
    assert len(chunks) > 2 and all(len(c.text) <= 500 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        last_sentence = before.text.rsplit(". ", 1)[-1]
        assert after.text.startswith(last_sentence)
        assert len(after.text.split("\n\n", 1)[0]) <= 500 * 0.15


def test_no_overlap_across_headings_or_when_disabled() -> None:
    text = "# T\n\n## A\n\n" + _sentences(3, "alpha") + "\n\n## B\n\n" + _sentences(3, "beta")
    chunks = chunk_markdown(text, title="T", max_chars=500)
    assert [c.heading for c in chunks] == ["T › A", "T › B"]
    assert "alpha" not in chunks[1].text.lower()
    long_text = "# T\n\n" + "\n\n".join(_sentences(4, f"w{i}") for i in range(6))
    plain = chunk_markdown(long_text, title="T", max_chars=500, overlap=0)
    joined = "\n\n".join(c.text for c in plain)
    assert joined.count("W0 sentence number 3") == 1


def test_code_is_never_repeated_and_long_code_stays_fenced() -> None:
    code = "```sh\n" + "\n".join(f"echo line {i}" for i in range(80)) + "\n```"
    text = "# T\n\n" + _sentences(6, "intro") + "\n\n" + code + "\n\n" + _sentences(6, "outro")
    chunks = chunk_markdown(text, title="T", max_chars=400)
    assert all(len(c.text) <= 400 for c in chunks)
    code_chunks = [c.text for c in chunks if "echo line" in c.text]
    assert len(code_chunks) > 1
    assert all(c.count("```") % 2 == 0 for c in code_chunks)
    assert sum(c.count("echo line 40\n") for c in code_chunks) == 1
    assert all("echo" not in plain_text(c.text) for c in chunks)


HTML = """<html><head><title>Help centre</title><style>.x{}</style></head><body>
<header><a href="/">Home</a> <a href="/shop">Shop</a></header>
<nav><ul><li>Menu item</li></ul></nav>
<main>
  <article>
    <header><h1>Returns</h1></header>
    <p>You can return any item
       within thirty days.</p>
    <ul><li>Keep the receipt.</li><li>Pack it well.</li></ul>
    <pre>code  stays
  as is</pre>
  </article>
  <aside>Related: gift cards</aside>
</main>
<footer>Copyright 2026</footer>
<script>track()</script>
</body></html>"""


def test_html_keeps_the_main_text_only() -> None:
    doc = parse_document(HTML, content_type="text/html", source="help.html", fallback_title="x")
    assert doc.title == "Help centre"
    for dropped in ("Home", "Menu item", "gift cards", "Copyright", "track", ".x{}"):
        assert dropped not in doc.text
    assert "# Returns" in doc.text  # a header inside the article is content
    assert "You can return any item within thirty days." in doc.text
    assert "- Keep the receipt." in doc.text
    assert "```\ncode  stays\n  as is\n```" in doc.text
    chunks = chunk_markdown(doc.text, title=doc.title)
    assert chunks[0].heading == "Returns"


def test_html_without_main_uses_the_body_and_h1_as_title() -> None:
    doc = parse_document(
        "<body><nav>skip</nav><h1>Opening hours</h1><p>Nine to five.</p></body>",
        content_type="text/html",
        source="hours.html",
        fallback_title="x",
    )
    assert doc.title == "Opening hours"
    assert "skip" not in doc.text and "Nine to five." in doc.text


def test_pdf_text_per_page_with_metadata_title(tmp_path: Path) -> None:
    raw = make_pdf(
        [
            [
                "The kettle is covered for two years from the date of",
                "purchase. Keep your receipt.",
                "",
                "Descale it with citric acid once a month.",
            ],
            ["Spare parts are sold online."],
        ],
        title="Kettle manual",
    )
    path = tmp_path / "kettle.pdf"
    path.write_bytes(raw)
    doc = read_document(path)
    assert doc.content_type == "application/pdf"
    assert doc.title == "Kettle manual"
    chunks = chunk_markdown(doc.text, title=doc.title)
    assert [c.heading for c in chunks] == ["Kettle manual › Page 1", "Kettle manual › Page 2"]
    assert "two years from the date of purchase. Keep your receipt." in chunks[0].text
    assert doc.checksum == parse_pdf(raw, source="other.pdf", fallback_title="x").checksum


def test_pdf_title_falls_back_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "user_guide.pdf"
    path.write_bytes(make_pdf([["Hello there, this is the guide."]]))
    assert read_document(path).title == "User Guide"


def test_unreadable_pdfs_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4 this is not a pdf")
    with pytest.raises(UnsupportedDocument, match="not a readable PDF"):
        read_document(path)
    empty = tmp_path / "scan.pdf"
    empty.write_bytes(make_pdf([[]]))
    with pytest.raises(UnsupportedDocument, match="no extractable text"):
        read_document(empty)
    with pytest.raises(UnsupportedDocument, match="unsupported type"):
        read_document(tmp_path / "slides.pptx")


def test_checksum_covers_the_text_and_the_index_format(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(source: str) -> str:
        return parse_document(
            "# A\n\nText.", content_type="text/markdown", source=source, fallback_title="a"
        ).checksum

    assert parse("a.md") == parse("b.md") == text_checksum("# A\n\nText.")
    before = parse("a.md")
    monkeypatch.setattr(ingest, "INDEX_FORMAT", INDEX_FORMAT + "-next")
    assert parse("a.md") != before  # a new chunking or embedding re-indexes on the next add

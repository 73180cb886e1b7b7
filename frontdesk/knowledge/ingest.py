"""Reading files into documents: Markdown, plain text and HTML (to text).

Other formats (PDF) come with the knowledge-base work; unknown types are refused with a clear
error rather than indexed as garbage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
CONTENT_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".html": "text/html",
    ".htm": "text/html",
}


class UnsupportedDocument(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class DocumentText:
    title: str
    source: str
    content_type: str
    text: str
    checksum: str


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template"})
    _BLOCK = frozenset({"p", "div", "li", "br", "tr", "section", "article"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skipping = 0
        self._in_title = False
        self._heading: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag == "title":
            self._in_title = False
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._in_title:
            self.title += data
        else:
            self.parts.append(data)


def html_to_markdown(html: str) -> tuple[str, str]:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.title.strip(), "".join(parser.parts)


def _markdown_title(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


def read_document(path: Path, *, source: str | None = None) -> DocumentText:
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None:
        raise UnsupportedDocument(f"{path.name}: unsupported type (use .md, .txt or .html).")
    raw = path.read_bytes()
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise UnsupportedDocument(f"{path.name}: larger than {MAX_DOCUMENT_BYTES} bytes.")
    return parse_document(
        raw.decode("utf-8", errors="replace"),
        content_type=content_type,
        source=source or path.name,
        fallback_title=path.stem.replace("-", " ").replace("_", " ").title(),
    )


def parse_document(
    text: str, *, content_type: str, source: str, fallback_title: str
) -> DocumentText:
    checksum = hashlib.sha256(text.encode()).hexdigest()
    title: str | None = None
    if content_type == "text/html":
        title, text = html_to_markdown(text)
    elif content_type == "text/markdown":
        title = _markdown_title(text)
    return DocumentText(
        title=(title or fallback_title)[:300],
        source=source[:1000],
        content_type=content_type,
        text=text,
        checksum=checksum,
    )

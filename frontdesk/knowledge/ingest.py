"""Reading files into documents: Markdown, plain text, HTML (its main text) and PDF (pypdf).

Every format becomes Markdown-ish text that the chunker cuts at headings and paragraphs:

* HTML keeps the text of `<main>` (else `<article>`, else `<body>`); navigation, asides,
  scripts and styles are dropped everywhere, page headers and footers outside the main text too.
  `h1`–`h6` become headings, `<pre>` a fenced code block, `<li>` a list item.
* PDF text is extracted page by page; each page is a section (`Title › Page 3`), its hard-wrapped
  lines joined into paragraphs. The title is the PDF's metadata title, else the file name.

A document's checksum hashes its extracted text together with `INDEX_FORMAT`, so re-adding an
unchanged file does nothing, a file whose text another document of the site already has is a
duplicate, and changing how documents are chunked or embedded (a new `INDEX_FORMAT`) re-indexes
each document the next time it is added. Unknown types are refused with a clear error.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from frontdesk.knowledge.embed import EMBEDDING_DIM, MODEL_CONFIG

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
MAX_PDF_BYTES = 20 * 1024 * 1024
MAX_PDF_PAGES = 2000
MAX_UPLOAD_BYTES = max(MAX_DOCUMENT_BYTES, MAX_PDF_BYTES)
INDEX_FORMAT = f"2:overlap:{MODEL_CONFIG}-{EMBEDDING_DIM}"
CONTENT_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}


class UnsupportedDocument(ValueError):
    """A file that cannot become a document; the message says why, for people."""


class UnsupportedType(UnsupportedDocument):
    """Neither the declared media type nor the file name is one of `CONTENT_TYPES`."""


class DocumentTooLarge(UnsupportedDocument):
    """Over `MAX_DOCUMENT_BYTES` (text) or `MAX_PDF_BYTES` (PDF)."""


@dataclass(frozen=True, slots=True)
class DocumentText:
    title: str
    source: str
    content_type: str
    text: str
    checksum: str


def text_checksum(text: str) -> str:
    return hashlib.sha256(f"{INDEX_FORMAT}\n{text}".encode()).hexdigest()


# --- HTML ---------------------------------------------------------------------------------------

_SPACE_RUN = re.compile(r"\s+")
_BLANK_RUN = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")


class _TextExtractor(HTMLParser):
    _DROP = frozenset({"script", "style", "noscript", "template", "nav", "aside", "svg"})
    _CHROME = frozenset({"header", "footer"})  # dropped outside <main>/<article> only
    _MAIN = frozenset({"main", "article"})
    _BLOCK = frozenset({"p", "div", "br", "tr", "section", "table", "blockquote", "dl", "dd"})
    _HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.body: list[str] = []
        self.main: list[str] = []
        self.title = ""
        self.first_h1 = ""
        self._dropping: list[str] = []
        self._main_depth = 0
        self._in_title = False
        self._in_h1 = False
        self._in_pre = 0

    def _emit(self, text: str) -> None:
        self.body.append(text)
        if self._main_depth:
            self.main.append(text)

    def _drops(self, tag: str) -> bool:
        return tag in self._DROP or (tag in self._CHROME and not self._main_depth)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._dropping:
            if tag == self._dropping[-1]:
                self._dropping.append(tag)
            return
        if self._drops(tag):
            self._dropping.append(tag)
        elif tag == "title":
            self._in_title = True
        elif tag in self._MAIN:
            self._main_depth += 1
            self._emit("\n\n")
        elif tag in self._HEADINGS:
            self._in_h1 = tag == "h1"
            self._emit("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "pre":
            self._in_pre += 1
            self._emit("\n\n```\n")
        elif tag == "li":
            self._emit("\n- ")
        elif tag in self._BLOCK:
            self._emit("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if self._dropping:
            if tag == self._dropping[-1]:
                self._dropping.pop()
            return
        if tag == "title":
            self._in_title = False
        elif tag in self._MAIN and self._main_depth:
            self._emit("\n\n")
            self._main_depth -= 1
        elif tag in self._HEADINGS:
            self._in_h1 = False
            self._emit("\n\n")
        elif tag == "pre" and self._in_pre:
            self._in_pre -= 1
            self._emit("\n```\n\n")
        elif tag in self._BLOCK:
            self._emit("\n\n")

    def handle_data(self, data: str) -> None:
        if self._dropping:
            return
        if self._in_title:
            self.title += data
            return
        if not self._in_pre:
            data = _SPACE_RUN.sub(" ", data)
        if self._in_h1:
            self.first_h1 = self.first_h1 or data.strip()
        self._emit(data)


def _tidy(text: str) -> str:
    """Lines stripped (code keeps its indentation), runs of blank lines made one."""
    lines: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        if line.strip().startswith("```"):
            in_fence = not in_fence
        lines.append(line.rstrip() if in_fence else line.strip())
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip() + "\n"


def html_to_markdown(html: str) -> tuple[str, str]:
    """(title, the page's main text as Markdown)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    parts = parser.main if "".join(parser.main).strip() else parser.body
    title = _SPACE_RUN.sub(" ", parser.title).strip() or parser.first_h1
    return title, _tidy("".join(parts))


# --- PDF ----------------------------------------------------------------------------------------

_SENTENCE_END = (".", "!", "?", ":", ";")


def _pdf_paragraphs(page_text: str) -> str:
    """Hard-wrapped PDF lines joined into paragraphs (a short line ending a sentence ends one)."""
    lines = [line.strip() for line in page_text.splitlines()]
    width = max((len(line) for line in lines), default=0)
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        if line:
            if current.endswith("-") and line[:1].islower():
                current = current[:-1] + line
            else:
                current = f"{current} {line}" if current else line
        if current and (not line or (line.endswith(_SENTENCE_END) and len(line) < 0.75 * width)):
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return "\n\n".join(paragraphs)


def _pdf_title(reader: object) -> str:
    try:
        metadata = getattr(reader, "metadata", None)
        title = getattr(metadata, "title", None) if metadata is not None else None
    except Exception:  # broken metadata is no reason to refuse the text
        return ""
    return " ".join(str(title).split()) if title else ""


def pdf_to_markdown(raw: bytes, *, name: str) -> tuple[str, str]:
    """(metadata title or "", the text as Markdown with one `## Page N` section per page)."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedDocument(f"{name}: the PDF is encrypted.")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise UnsupportedDocument(f"{name}: more than {MAX_PDF_PAGES} pages.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnsupportedDocument:
        raise
    except Exception as exc:  # pypdf raises many types on malformed input
        raise UnsupportedDocument(f"{name}: not a readable PDF ({type(exc).__name__}).") from exc
    sections = [
        f"## Page {number}\n\n{_pdf_paragraphs(text)}"
        for number, text in enumerate(pages, start=1)
        if text.strip()
    ]
    if not sections:
        raise UnsupportedDocument(f"{name}: the PDF has no extractable text (a scan?).")
    return _pdf_title(reader), "\n\n".join(sections) + "\n"


# --- Reading ------------------------------------------------------------------------------------


def _markdown_title(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


def title_from_name(name: str) -> str:
    """`shipping-and-returns.md` → `Shipping And Returns` (a title when the file has none)."""
    return Path(name).stem.replace("-", " ").replace("_", " ").title() or name


def max_bytes(content_type: str) -> int:
    return MAX_PDF_BYTES if content_type == "application/pdf" else MAX_DOCUMENT_BYTES


def content_type_of(name: str, declared: str | None = None) -> str:
    """The document type: the declared media type when it is a supported one, else the one the
    file name's extension says (a generic `application/octet-stream` says nothing)."""
    media_type = (declared or "").split(";", 1)[0].strip().lower()
    if media_type in CONTENT_TYPES.values():
        return media_type
    by_name = CONTENT_TYPES.get(Path(name).suffix.lower())
    if by_name is None:
        raise UnsupportedType(f"{name}: unsupported type (use .md, .txt, .html or .pdf).")
    return by_name


def check_upload(raw: bytes, *, content_type: str, name: str) -> None:
    """The checks that cost nothing, made before an upload is accepted: its size, that it is not
    empty, and that a PDF starts like one and a text file is not binary. Whether a PDF can be
    read, and whether a document has any text to index, is known only once it is extracted."""
    limit = max_bytes(content_type)
    if len(raw) > limit:
        raise DocumentTooLarge(f"{name}: larger than {limit} bytes.")
    if not raw.strip():
        raise UnsupportedDocument(f"{name}: the file is empty.")
    if content_type == "application/pdf":
        if b"%PDF-" not in raw[:1024]:
            raise UnsupportedDocument(f"{name}: not a PDF (no %PDF- header).")
    elif b"\x00" in raw[:8192]:
        raise UnsupportedDocument(f"{name}: binary data, not {content_type} text.")


def parse_upload(
    raw: bytes, *, content_type: str, source: str, fallback_title: str
) -> DocumentText:
    """An upload's bytes as a document (text is read as UTF-8, undecodable bytes replaced)."""
    if content_type == "application/pdf":
        return parse_pdf(raw, source=source, fallback_title=fallback_title)
    return parse_document(
        raw.decode("utf-8", errors="replace"),
        content_type=content_type,
        source=source,
        fallback_title=fallback_title,
    )


def read_document(path: Path, *, source: str | None = None) -> DocumentText:
    content_type = content_type_of(path.name)
    limit = max_bytes(content_type)
    if path.stat().st_size > limit:
        raise DocumentTooLarge(f"{path.name}: larger than {limit} bytes.")
    return parse_upload(
        path.read_bytes(),
        content_type=content_type,
        source=source or path.name,
        fallback_title=title_from_name(path.name),
    )


def _document(title: str, source: str, content_type: str, text: str) -> DocumentText:
    return DocumentText(
        title=title[:300],
        source=source[:1000],
        content_type=content_type,
        text=text,
        checksum=text_checksum(text),
    )


def parse_pdf(raw: bytes, *, source: str, fallback_title: str) -> DocumentText:
    title, text = pdf_to_markdown(raw, name=source)
    title = title or fallback_title
    return _document(title, source, "application/pdf", f"# {title}\n\n{text}")


def parse_document(
    text: str, *, content_type: str, source: str, fallback_title: str
) -> DocumentText:
    title: str | None = None
    if content_type == "text/html":
        title, text = html_to_markdown(text)
    elif content_type == "text/markdown":
        title = _markdown_title(text)
    return _document(title or fallback_title, source, content_type, text)

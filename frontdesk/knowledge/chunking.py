"""Splitting a document into retrievable chunks.

Markdown is cut at headings first (each chunk remembers its heading path, which becomes the
citation title) and then at paragraph boundaries so that no chunk exceeds `max_chars`. Within a
section, each chunk after the first repeats the last sentence(s) of the one before (about 15% of
`max_chars`), so that a fact cut off at a boundary is still found with its context. Fenced code
blocks are kept whole and never repeated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
OVERLAP = 0.15  # share of a chunk's size carried into the next chunk of the same section


@dataclass(frozen=True, slots=True)
class Chunk:
    heading: str
    text: str


def _blocks(text: str) -> list[str]:
    """Paragraphs separated by blank lines, a fenced code block always kept whole."""
    blocks: list[str] = []
    current: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
        if not line.strip() and not in_fence:
            if current:
                blocks.append("\n".join(current))
                current = []
        else:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _cut_prose(paragraph: str, max_chars: int) -> list[str]:
    pieces: list[str] = []
    while len(paragraph) > max_chars:
        cut = paragraph.rfind(" ", 0, max_chars)
        cut = cut if cut > max_chars // 2 else max_chars
        pieces.append(paragraph[:cut].strip())
        paragraph = paragraph[cut:].strip()
    return [*pieces, paragraph] if paragraph else pieces


def _cut_code(block: str, max_chars: int) -> list[str]:
    """A fenced block too long for one chunk, cut between lines, each part fenced again."""
    lines = block.splitlines()
    opener = lines[0].strip()
    body = lines[1:-1] if len(lines) > 1 and lines[-1].strip().startswith("```") else lines[1:]
    room = max(max_chars - len(opener) - 8, 16)
    pieces: list[str] = []
    current: list[str] = []
    for line in body:
        line = line[:room]
        if current and sum(len(x) + 1 for x in current) + len(line) > room:
            pieces.append("\n".join([opener, *current, "```"]))
            current = []
        current.append(line)
    if current:
        pieces.append("\n".join([opener, *current, "```"]))
    return pieces


def _pieces(text: str, max_chars: int, prose_chars: int) -> list[str]:
    """The paragraphs of a section: prose longer than `prose_chars` cut at spaces, a code block
    longer than `max_chars` cut between lines."""
    pieces: list[str] = []
    for block in _blocks(text):
        paragraph = block.strip()
        if paragraph.startswith("```"):
            fits = len(paragraph) <= max_chars
            pieces.extend([paragraph] if fits else _cut_code(paragraph, max_chars))
        else:
            pieces.extend(_cut_prose(paragraph, prose_chars))
    return pieces


def _tail(part: str, budget: int) -> str:
    """The end of a chunk to repeat at the start of the next: its last sentences (or, when the
    last sentence is too long, its last words) within `budget` characters; never code."""
    last = part.rsplit("\n\n", 1)[-1]
    if budget <= 0 or "```" in last:
        return ""
    tail = ""
    for sentence in reversed(_SENTENCE_END.split(last)):
        candidate = f"{sentence} {tail}".strip()
        if len(candidate) > budget:
            break
        tail = candidate
    if not tail:
        cut = last.find(" ", len(last) - budget)
        tail = last[cut:].strip() if cut >= 0 else ""
    return tail


def _split_long(text: str, max_chars: int, overlap: float = 0.0) -> list[str]:
    """Paragraphs packed into parts of at most `max_chars`; each part after the first starts
    with the tail of the one before (about `overlap` × `max_chars` characters), so a passage
    cut at a boundary keeps its context."""
    budget = int(max_chars * overlap)
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, max_chars, max_chars - budget - 2):
        if not current or len(current) + len(piece) + 2 <= max_chars:
            current = f"{current}\n\n{piece}" if current else piece
            continue
        parts.append(current)
        tail = _tail(current, budget)
        fits = len(tail) + len(piece) + 2 <= max_chars
        current = f"{tail}\n\n{piece}" if tail and fits else piece
    if current:
        parts.append(current)
    return parts


def chunk_markdown(
    text: str, *, title: str, max_chars: int = 900, overlap: float = OVERLAP
) -> list[Chunk]:
    chunks: list[Chunk] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        heading = " › ".join(h for _, h in path) or title
        for part in _split_long("\n".join(body), max_chars, overlap):
            chunks.append(Chunk(heading=heading, text=part))
        body.clear()

    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            path[:] = [(lv, h) for lv, h in path if lv < level]
            path.append((level, match.group(2)))
        else:
            body.append(line)
    flush()
    return chunks

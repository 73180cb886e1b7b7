"""Splitting a document into retrievable chunks.

Markdown is cut at headings first (each chunk remembers its heading path, which becomes the
citation title) and then at paragraph boundaries so that no chunk exceeds `max_chars`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


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


def _split_long(text: str, max_chars: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for paragraph in _blocks(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        while len(paragraph) > max_chars:  # one huge paragraph: cut at a space
            cut = paragraph.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            if current:
                parts.append(current)
                current = ""
            parts.append(paragraph[:cut].strip())
            paragraph = paragraph[cut:].strip()
        if current and len(current) + len(paragraph) + 2 > max_chars:
            parts.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        parts.append(current)
    return parts


def chunk_markdown(text: str, *, title: str, max_chars: int = 900) -> list[Chunk]:
    chunks: list[Chunk] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        heading = " › ".join(h for _, h in path) or title
        for part in _split_long("\n".join(body), max_chars):
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

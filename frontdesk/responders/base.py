"""The responder protocol: stream an answer as deltas, then one final answer.

A responder yields any number of `Delta`s and then exactly one `FinalAnswer` whose text is the
complete answer (the deltas concatenated, possibly tidied), with citations and usage. Raising
`ResponderError` means "no answer from me"; the caller decides what the visitor sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class HistoryItem:
    role: str
    text: str


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    site_id: str
    conversation_id: str
    visitor_id: str
    question: str
    history: list[HistoryItem]
    locale: str


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    text: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class ResponderError(Exception):
    """The responder could not answer (upstream down, misconfigured, timed out)."""


class Responder(Protocol):
    name: str

    def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]: ...

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
    site_name: str = ""
    upstream: dict[str, Any] = field(default_factory=dict)
    """What upstream engines told us in earlier turns (e.g. Dify's conversation id)."""


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    text: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


RETRYABLE = frozenset({"timeout", "connect", "server_error", "rate_limited", "protocol"})


class ResponderError(Exception):
    """The responder could not answer (upstream down, misconfigured, timed out).

    `kind` is one of: timeout, connect, server_error, rate_limited, protocol, auth,
    bad_request, circuit_open, unavailable. `retry_after_s` comes from the upstream's
    `Retry-After` when it sent one.
    """

    def __init__(self, kind: str, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class Responder(Protocol):
    name: str

    def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]: ...

"""The responder chain: timeouts, retries before the first token, circuit breakers, fallbacks.

A chain is itself a `Responder`. Each link runs under its breaker with three timeouts (connect is
the HTTP client's; first token and total are enforced here). Errors before the first token are
retried with tenacity (exponential backoff with jitter, or the upstream's `Retry-After` when it is
short); after the first token nothing is retried, because that would repeat text. If a link fails
after partial output, the partial answer is kept, marked as interrupted, and the next link
continues after the mark. When every link fails, the visitor gets the graceful reply offering to
take their email.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from frontdesk.observability import metrics
from frontdesk.observability.tracing import AttemptSpan, outcome_of, responder_attempt
from frontdesk.responders.base import AnswerRequest, Delta, FinalAnswer, Responder, ResponderError
from frontdesk.responders.breaker import CircuitBreaker

GRACEFUL = {
    "en": ("Sorry, I can't answer right now. Leave your email and a person will get back to you."),
    "ru": "Извините, сейчас я не могу ответить. Оставьте email, и сотрудник свяжется с вами.",
}
INTERRUPTED = {
    "en": "\n\n[The answer was interrupted; another assistant continues.]\n\n",
    "ru": "\n\n[Ответ прервался; продолжает другой помощник.]\n\n",
}
MAX_RETRY_AFTER_S = 2.0

FailureHook = Callable[[str, ResponderError], Awaitable[None]]
OpenedHook = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 3.0
    first_token_s: float = 15.0
    total_s: float = 60.0


@dataclass
class Link:
    responder: Responder
    breaker: CircuitBreaker | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    retries: int = 2

    @property
    def name(self) -> str:
        return self.responder.name


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, ResponderError) and error.retry_after_s is not None:
        return min(error.retry_after_s, MAX_RETRY_AFTER_S)
    return float(wait_random_exponential(multiplier=0.05, max=0.5)(state))


def _retryable(error: BaseException) -> bool:
    if not isinstance(error, ResponderError) or not error.retryable:
        return False
    return error.retry_after_s is None or error.retry_after_s <= MAX_RETRY_AFTER_S


async def _close(stream: AsyncIterator[Delta | FinalAnswer]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class ResponderChain:
    name = "chain"

    def __init__(
        self,
        links: list[Link],
        *,
        on_failure: FailureHook | None = None,
        on_circuit_opened: OpenedHook | None = None,
    ) -> None:
        self.links = links
        self.on_failure = on_failure
        self.on_circuit_opened = on_circuit_opened

    async def _failed(self, link: Link, error: ResponderError, probe: bool) -> None:
        metrics.responder_error(link.name, error.kind)
        if error.kind == "circuit_open":
            return
        opened = link.breaker is not None and await link.breaker.record_failure(probe)
        if opened and self.on_circuit_opened is not None:
            await self.on_circuit_opened(link.name)
        if self.on_failure is not None:
            await self.on_failure(link.name, error)

    async def _first_item(
        self, link: Link, request: AnswerRequest
    ) -> tuple[AsyncIterator[Delta | FinalAnswer], Delta | FinalAnswer, bool, AttemptSpan]:
        """Start the link's stream and wait for its first item, retrying what may be retried.
        Each try is a span of its own; the successful one is returned to be finished by the
        caller when the answer ends."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(link.retries + 1),
            wait=_wait,
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                span = responder_attempt(link.name, attempt.retry_state.attempt_number)
                try:
                    with span.active():
                        stream, first, probe = await self._attempt(link, request)
                except BaseException as exc:
                    span.finish(outcome_of(exc), str(exc))
                    raise
                span.first_item()
                return stream, first, probe, span
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, link: Link, request: AnswerRequest
    ) -> tuple[AsyncIterator[Delta | FinalAnswer], Delta | FinalAnswer, bool]:
        """One try: the breaker's permission, the call, and its first item in time."""
        probe = await link.breaker.before_call() if link.breaker else False
        stream = link.responder.answer(request).__aiter__()
        try:
            async with asyncio.timeout(link.timeouts.first_token_s):
                first = await anext(stream)
        except TimeoutError as exc:
            await _close(stream)
            error = ResponderError("timeout", f"{link.name}: no first token in time")
            await self._failed(link, error, probe)
            raise error from exc
        except StopAsyncIteration as exc:
            error = ResponderError("protocol", f"{link.name}: empty answer")
            await self._failed(link, error, probe)
            raise error from exc
        except ResponderError as error:
            await _close(stream)
            await self._failed(link, error, probe)
            raise
        return stream, first, probe

    async def _run_link(
        self, link: Link, request: AnswerRequest, sent: list[str]
    ) -> AsyncIterator[Delta | FinalAnswer]:
        """Yield the link's items; `sent` collects the text already streamed to the visitor."""
        started = time.perf_counter()
        deadline = time.monotonic() + link.timeouts.total_s
        stream, item, probe, span = await self._first_item(link, request)
        metrics.responder_first_token(link.name, time.perf_counter() - started)
        try:
            while True:
                if isinstance(item, FinalAnswer):
                    if link.breaker is not None:
                        await link.breaker.record_success(probe)
                    metrics.responder_answered(link.name, time.perf_counter() - started, item.usage)
                    span.finish("ok")
                    yield item
                    return
                sent.append(item.text)
                yield item
                try:
                    with span.active():
                        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                            item = await anext(stream)
                except TimeoutError as exc:
                    raise ResponderError("timeout", f"{link.name}: answer took too long") from exc
                except StopAsyncIteration as exc:
                    raise ResponderError(
                        "protocol", f"{link.name}: ended without a final answer"
                    ) from exc
        except ResponderError as error:
            span.finish(error.kind, str(error))
            await self._failed(link, error, probe)
            raise
        except BaseException as exc:  # a bug, or the visitor's turn was cancelled
            span.finish(outcome_of(exc), repr(exc))
            raise
        finally:
            await _close(stream)

    async def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]:
        prefix = ""
        interrupted: list[dict[str, Any]] = []
        failed: list[dict[str, str]] = []
        marker = INTERRUPTED.get(request.locale, INTERRUPTED["en"])
        for link in self.links:
            sent: list[str] = []
            try:
                async for item in self._run_link(link, request, sent):
                    if isinstance(item, FinalAnswer):
                        found = {**item.meta, "responder": item.meta.get("responder", link.name)}
                        if failed:
                            found["failed"] = failed
                        if interrupted:
                            found["interrupted"] = interrupted
                        yield FinalAnswer(prefix + item.text, item.citations, item.usage, found)
                        return
                    yield item
            except ResponderError as error:
                metrics.responder_failed(link.name)
                failed.append({"responder": link.name, "kind": error.kind})
                if sent:
                    # Keep what the visitor already read; say clearly that it stopped there.
                    prefix += "".join(sent) + marker
                    interrupted.append({"responder": link.name, "chars": len("".join(sent))})
                    yield Delta(marker)
        reply = GRACEFUL.get(request.locale, GRACEFUL["en"])
        yield Delta(reply)
        meta: dict[str, Any] = {"responder": "fallback", "fallback": True, "lead_offer": True}
        if failed:
            meta["failed"] = failed
        if interrupted:
            meta["interrupted"] = interrupted
        yield FinalAnswer(prefix + reply, meta=meta)

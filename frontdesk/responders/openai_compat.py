"""OpenAI-compatible responder: streaming chat completions through the official `openai` SDK.

Works with OpenAI and anything that speaks its Chat Completions API (Ollama, vLLM, LM Studio).
The conversation history is windowed to a token budget (estimated at four characters a token),
the site's system prompt leads, and usage is read from the final chunk (`include_usage`).
Upstream errors become `ResponderError`s with a kind the chain understands.

The SDK's client sends the request (base URL, key, timeouts, connection pool, its error classes
for refused connections and HTTP errors), but the stream's chunks are read here: the SDK would
validate the request body against its typed parameters (about 0.2 ms of CPU per message of
history) and build a pydantic model per chunk, which made up most of the server's CPU while
answers streamed (decision 0024). Only the fields FrontDesk uses are read from each chunk.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming

from frontdesk.responders.base import AnswerRequest, Delta, FinalAnswer, HistoryItem, ResponderError
from frontdesk.responders.config import OpenAIConfig
from frontdesk.responders.sse import EventStream, drain, event_object

DEFAULT_SYSTEM = (
    "You are the assistant on the website of {site}. Answer briefly, accurately and politely. "
    "If you do not know, say so and offer to put the visitor in touch with a person."
)
ROLE_MAP = {"visitor": "user", "assistant": "assistant", "operator": "assistant"}
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
DONE = b"[DONE]"


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) + 4


def window_history(history: list[HistoryItem], budget_tokens: int) -> list[dict[str, str]]:
    """The most recent turns that fit the budget, oldest first."""
    kept: list[dict[str, str]] = []
    used = 0
    for item in reversed(history):
        role = ROLE_MAP.get(item.role)
        if role is None:
            continue
        cost = estimate_tokens(item.text)
        if used + cost > budget_tokens:
            break
        kept.append({"role": role, "content": item.text})
        used += cost
    return list(reversed(kept))


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def map_error(error: Exception) -> ResponderError:
    """An error of the SDK (sending the request) or of httpx (reading the stream) as a
    `ResponderError` the chain understands."""
    if isinstance(error, ResponderError):
        return error
    if isinstance(error, openai.APITimeoutError | httpx.TimeoutException):
        return ResponderError("timeout", "the upstream timed out")
    if isinstance(error, openai.APIConnectionError):
        return ResponderError("connect", "the upstream could not be reached")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 429:
            return ResponderError(
                "rate_limited",
                "the upstream is rate limiting",
                retry_after_s=_retry_after(error.response.headers),
            )
        if status in (401, 403):
            return ResponderError("auth", f"the upstream refused the key ({status})")
        if status >= 500:
            return ResponderError("server_error", f"the upstream failed ({status})")
        return ResponderError("bad_request", f"the upstream rejected the request ({status})")
    return ResponderError("protocol", f"the upstream stream broke: {type(error).__name__}")


def read_chunk(payload: bytes) -> dict[str, Any]:
    """One `chat.completion.chunk`, or the error the upstream sent instead of one."""
    chunk = event_object(payload, "the upstream sent a malformed chunk")
    error = chunk.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else None
        raise ResponderError(
            "server_error", f"the upstream failed mid-answer: {message or 'no message'}"[:300]
        )
    return chunk


def usage_of(chunk: dict[str, Any]) -> dict[str, int] | None:
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return None
    return {k: int(usage[k]) for k in USAGE_FIELDS if isinstance(usage.get(k), int | float)}


def text_of(chunk: dict[str, Any]) -> str:
    """The new text of a chunk (one choice is asked for; any others are appended)."""
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list):
        return ""
    text = ""
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if content and isinstance(content, str):
            text += content
    return text


class OpenAIResponder:
    def __init__(
        self,
        config: OpenAIConfig,
        client: AsyncOpenAI,
        *,
        history_budget_tokens: int = 3000,
    ) -> None:
        self.config = config
        self.client = client
        self.history_budget_tokens = history_budget_tokens
        self.name = f"openai:{config.base_url.host}"

    def messages(self, request: AnswerRequest) -> list[dict[str, str]]:
        system = self.config.system_prompt or DEFAULT_SYSTEM.format(
            site=request.site_name or "this site"
        )
        return [
            {"role": "system", "content": system},
            *window_history(request.history, self.history_budget_tokens),
            {"role": "user", "content": request.question},
        ]

    async def _open(self, request: AnswerRequest) -> httpx.Response:
        """POST /chat/completions through the SDK's client; the response's body still unread.
        The body is typed as the SDK's streaming parameters but sent as it is built."""
        body: CompletionCreateParamsStreaming = {
            "model": self.config.model,
            "messages": self.messages(request),  # type: ignore[typeddict-item]
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        try:
            # With `cast_to=httpx.Response` and `stream` the SDK hands back the response with
            # its body unread; its signature asks for a stream class whenever `stream` is set,
            # and types the result as one.
            response = await self.client.post(
                "/chat/completions",
                cast_to=httpx.Response,
                body=body,
                stream=True,
                stream_cls=openai.AsyncStream[Any],
            )
        except Exception as exc:  # the SDK raises its own tree; map it for the chain
            raise map_error(exc) from exc
        return cast(httpx.Response, response)

    async def _payloads(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The data of each event of the stream, up to `[DONE]` or the end of the body."""
        events = EventStream()
        chunks = response.aiter_bytes()
        try:
            async for data in chunks:
                for payload in events.feed(data):
                    if payload[:6] == DONE:
                        await drain(chunks)
                        return
                    yield payload
        except httpx.HTTPError as exc:
            raise map_error(exc) from exc
        # The body ended without `[DONE]` (some servers leave it out): what came is the answer.
        for payload in events.end():
            if payload[:6] != DONE:
                yield payload

    async def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]:
        response = await self._open(request)
        pieces: list[str] = []
        usage: dict[str, int] = {}
        try:
            async for payload in self._payloads(response):
                chunk = read_chunk(payload)
                usage = usage_of(chunk) or usage
                text = text_of(chunk)
                if text:
                    pieces.append(text)
                    yield Delta(text)
        finally:
            await response.aclose()
        if not pieces:
            raise ResponderError("protocol", "the upstream sent an empty answer")
        yield FinalAnswer(
            "".join(pieces),
            usage=usage,
            meta={"responder": "openai", "model": self.config.model},
        )

"""OpenAI-compatible responder: streaming chat completions through the official `openai` SDK.

Works with OpenAI and anything that speaks its Chat Completions API (Ollama, vLLM, LM Studio).
The conversation history is windowed to a token budget (estimated at four characters a token),
the site's system prompt leads, and usage is read from the final chunk (`include_usage`).
Upstream errors become `ResponderError`s with a kind the chain understands.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI

from frontdesk.responders.base import AnswerRequest, Delta, FinalAnswer, HistoryItem, ResponderError
from frontdesk.responders.config import OpenAIConfig

DEFAULT_SYSTEM = (
    "You are the assistant on the website of {site}. Answer briefly, accurately and politely. "
    "If you do not know, say so and offer to put the visitor in touch with a person."
)
ROLE_MAP = {"visitor": "user", "assistant": "assistant", "operator": "assistant"}


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
    if isinstance(error, ResponderError):
        return error
    if isinstance(error, openai.APITimeoutError):
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

    async def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]:
        pieces: list[str] = []
        usage: dict[str, int] = {}
        try:
            stream: Any = await self.client.chat.completions.create(  # type: ignore[call-overload]
                model=self.config.model,
                messages=self.messages(request),
                stream=True,
                stream_options={"include_usage": True},
            )
        except Exception as exc:  # the SDK raises its own tree; map it for the chain
            raise map_error(exc) from exc
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = {
                        "prompt_tokens": chunk.usage.prompt_tokens,
                        "completion_tokens": chunk.usage.completion_tokens,
                        "total_tokens": chunk.usage.total_tokens,
                    }
                for choice in chunk.choices:
                    content = choice.delta.content if choice.delta else None
                    if content:
                        pieces.append(content)
                        yield Delta(content)
        except Exception as exc:
            raise map_error(exc) from exc
        finally:
            await stream.close()
        if not pieces:
            raise ResponderError("protocol", "the upstream sent an empty answer")
        yield FinalAnswer(
            "".join(pieces),
            usage=usage,
            meta={"responder": "openai", "model": self.config.model},
        )

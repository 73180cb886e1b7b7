"""A fake of OpenAI's Chat Completions API, as `AsyncOpenAI(...).chat.completions.create` uses it.

Faithful to the wire format the official SDK parses: POST /v1/chat/completions and GET /v1/models;
Bearer auth; OpenAI's error envelope `{"error": {message, type, param, code}}` for 401
(invalid_api_key), 404 (model_not_found, unknown URL), 400 (missing_required_parameter), 429
(rate_limit_exceeded, with Retry-After) and 500 (server_error); a `chat.completion` object; and a
`text/event-stream` of `chat.completion.chunk` objects: a role chunk, one chunk per token, a chunk
with finish_reason, a `choices: []` chunk with usage when stream_options.include_usage (every other
chunk then carries `"usage": null`), then `data: [DONE]`. `max_tokens` / `max_completion_tokens`
cut the answer with finish_reason "length". An in-stream error is `data: {"error": {...}}` and the
stream ends without [DONE], which the SDK raises as APIError.

Simplified on purpose: one choice whatever `n`; no tools, logprobs, audio, moderation or
obfuscation fields; tokens are words; the response names the requested model (no dated snapshot);
Retry-After may be a fraction of a second so that tests stay fast (the SDK honours it).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from tests.fakes.server import (
    Exchange,
    FakeUpstream,
    RecordedRequest,
    answer_words,
    dumps,
    pieces,
)

FINGERPRINT = "fp_fake0001"


def _error(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass(eq=False)
class OpenAIFake(FakeUpstream):
    """The fake; an ASGI app. `model` is the only model it serves; `api_key` the key it accepts."""

    api_key: str = "sk-test"
    model: str = "gpt-4o-mini"

    def error_body(self, status: int) -> dict[str, Any]:
        if status == 429:
            return _error(
                f"Rate limit reached for {self.model} on requests per min (RPM): "
                "Limit 3, Used 3, Requested 1. Please try again later.",
                "requests",
                "rate_limit_exceeded",
            )
        return _error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )

    async def handle(self, ex: Exchange, rec: RecordedRequest) -> None:
        route = (ex.method, ex.path)
        if route not in {("GET", "/v1/models"), ("POST", "/v1/chat/completions")}:
            msg = f"Invalid URL ({ex.method} {ex.path})"
            await ex.json(404, _error(msg, "invalid_request_error", None))
            return
        auth = ex.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            msg = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            await ex.json(401, _error(msg, "invalid_request_error", None))
            return
        key = auth[7:].strip()
        if key != self.api_key:
            msg = f"Incorrect API key provided: {key[:3]}****{key[-4:]}."
            await ex.json(401, _error(msg, "invalid_request_error", "invalid_api_key"))
            return
        rec.authorized = True
        if ex.method == "GET":
            model = {
                "id": self.model,
                "object": "model",
                "created": 1721172741,
                "owned_by": "system",
            }
            await ex.json(200, {"object": "list", "data": [model]})
            return
        await self._chat(ex, rec, rec.json)

    async def _chat(self, ex: Exchange, rec: RecordedRequest, body: Any) -> None:
        if not isinstance(body, dict):
            msg = "We could not parse the JSON body of your request."
            await ex.json(400, _error(msg, "invalid_request_error", None))
            return
        for name in ("model", "messages"):
            if name not in body:
                msg = f"Missing required parameter: '{name}'."
                await ex.json(
                    400, _error(msg, "invalid_request_error", "missing_required_parameter", name)
                )
                return
        if body["model"] != self.model:
            msg = f"The model `{body['model']}` does not exist or you do not have access to it."
            await ex.json(404, _error(msg, "invalid_request_error", "model_not_found"))
            return
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        k = self.next_knobs()
        stream = body.get("stream") is True
        if not await self.before_headers(ex, k, streaming=stream):
            return
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        words = answer_words(_text(last_user.get("content")), k.answer_tokens)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and 0 < limit < len(words):
            words, finish = words[:limit], "length"
        prompt_tokens = sum(len(_text(m.get("content")).split()) for m in messages)
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": body["model"],
        }
        headers = {"x-request-id": f"req_{uuid.uuid4().hex}"}
        if not stream:
            if not await self.generation_time(ex, k, len(words)):
                return
            choice = {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": " ".join(words),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish,
            }
            completion = {
                **head,
                "object": "chat.completion",
                "choices": [choice],
                "usage": _usage(prompt_tokens, len(words)),
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT,
            }
            if k.mode == "malformed":
                await ex.start(200, "application/json", headers)
                await ex.finish(b"{not json")
            elif k.mode == "drop":
                await self.drop_body(ex, dumps(completion))
            else:
                rec.tokens_sent = len(words)
                await ex.json(200, completion, headers)
            return

        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            obj = {
                **head,
                "object": "chat.completion.chunk",
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
                **extra,
            }
            if include_usage:
                obj.setdefault("usage", None)
            return b"data: " + dumps(obj) + b"\n\n"

        def delta(content: dict[str, Any], finish_reason: str | None = None) -> bytes:
            c = {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}
            return chunk([c])

        async def emit(i: int, piece: str) -> None:
            if i == 0:
                await ex.write(delta({"role": "assistant", "content": "", "refusal": None}))
            await ex.write(delta({"content": piece}))

        async def stream_error() -> None:
            await ex.finish(b"data: " + dumps(self.error_body(500)) + b"\n\n")

        await ex.start(200, "text/event-stream; charset=utf-8", headers)
        if not await self.run_tokens(ex, rec, k, pieces(words), emit, stream_error):
            return
        await ex.write(delta({}, finish))
        if include_usage:
            await ex.write(chunk([], usage=_usage(prompt_tokens, len(words))))
        await ex.finish(b"data: [DONE]\n\n")

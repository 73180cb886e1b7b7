"""Dify responder: a Dify chat app through its Service API (`POST /v1/chat-messages`, streaming).

Handles `message` and `agent_message` pieces, `message_replace` (the whole answer replaced),
`message_end` (usage; `retriever_resources` become citations), `error`, and `ping`; workflow and
node events are ignored. Our conversation maps to Dify's `conversation_id` (kept in the answer's
private meta, `_upstream`), and `user` is our visitor id. If the answer is abandoned before
`message_end` (timeout, cancel), Dify is told to stop the task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from frontdesk.responders.base import AnswerRequest, Delta, FinalAnswer, ResponderError
from frontdesk.responders.config import DifyConfig
from frontdesk.responders.sse import EventStream, drain, event_object

_background: set[asyncio.Task[None]] = set()


def map_status(status: int, body: dict[str, Any], retry_after: str | None) -> ResponderError:
    code = str(body.get("code", "")) if isinstance(body, dict) else ""
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    detail = f"dify {status} {code}: {message}".strip()
    if status == 429:
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        return ResponderError("rate_limited", detail, retry_after_s=seconds)
    if status in (401, 403):
        return ResponderError("auth", detail)
    if status >= 500:
        return ResponderError("server_error", detail)
    return ResponderError("bad_request", detail)


def citations_from(resources: Any) -> list[dict[str, Any]]:
    citations = []
    for resource in resources if isinstance(resources, list) else []:
        if isinstance(resource, dict):
            title = resource.get("document_name") or resource.get("dataset_name") or "Source"
            snippet = str(resource.get("content") or "")[:240]
            citations.append({"title": str(title), "snippet": snippet})
    return citations


class DifyResponder:
    def __init__(self, config: DifyConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self.base = str(config.base_url).rstrip("/")
        self.name = f"dify:{config.base_url.host}"

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    def _stop(self, task_id: str, user: str) -> None:
        async def stop() -> None:
            with contextlib.suppress(Exception):
                await self.http.post(
                    f"{self.base}/v1/chat-messages/{task_id}/stop",
                    json={"user": user},
                    headers=self._headers,
                    timeout=3,
                )

        task = asyncio.get_running_loop().create_task(stop())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]:
        conversation_id = str(request.upstream.get("dify_conversation_id") or "")
        try:
            async for item in self._stream(request, conversation_id):
                yield item
        except ResponderError as error:
            if error.kind != "unknown_conversation":
                raise
            # Dify no longer knows the conversation: start a new one (history stays ours).
            async for item in self._stream(request, ""):
                yield item

    async def _stream(
        self, request: AnswerRequest, conversation_id: str
    ) -> AsyncIterator[Delta | FinalAnswer]:
        body = {
            "inputs": {},
            "query": request.question,
            "response_mode": "streaming",
            "conversation_id": conversation_id,
            "user": request.visitor_id,
        }
        pieces: list[str] = []
        usage: dict[str, int] = {}
        citations: list[dict[str, Any]] = []
        task_id: str | None = None
        finished = False
        try:
            async with self.http.stream(
                "POST", f"{self.base}/v1/chat-messages", json=body, headers=self._headers
            ) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    try:
                        error_body = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        error_body = {}
                    if response.status_code == 404 and conversation_id:
                        raise ResponderError("unknown_conversation", "dify lost the conversation")
                    raise map_status(
                        response.status_code, error_body, response.headers.get("retry-after")
                    )
                events = EventStream()
                chunks = response.aiter_bytes()
                async for received in chunks:
                    for payload in events.feed(received):
                        data = event_object(payload, "dify sent a malformed event")
                        event = data.get("event")
                        task_id = task_id or data.get("task_id")
                        conversation_id = data.get("conversation_id") or conversation_id
                        if event in ("message", "agent_message"):
                            piece = str(data.get("answer") or "")
                            if piece:
                                pieces.append(piece)
                                yield Delta(piece)
                        elif event == "message_replace":
                            pieces = [str(data.get("answer") or "")]
                        elif event == "message_end":
                            metadata = data.get("metadata") or {}
                            raw_usage = metadata.get("usage") or {}
                            usage = {
                                k: int(raw_usage[k])
                                for k in ("prompt_tokens", "completion_tokens", "total_tokens")
                                if isinstance(raw_usage.get(k), int | float)
                            }
                            citations = citations_from(metadata.get("retriever_resources"))
                            finished = True
                            break
                        elif event == "error":
                            status = int(data.get("status") or 500)
                            raise map_status(status, data, None)
                        # anything else (workflow, node, ping, and events Dify adds) is skipped
                    if finished:
                        await drain(chunks)
                        break
        except httpx.TimeoutException as exc:
            raise ResponderError("timeout", "dify timed out") from exc
        except httpx.TransportError as exc:
            kind = "connect" if isinstance(exc, httpx.ConnectError) else "protocol"
            raise ResponderError(kind, f"dify connection failed: {type(exc).__name__}") from exc
        finally:
            if not finished and task_id:
                self._stop(task_id, request.visitor_id)
        if not finished:
            raise ResponderError("protocol", "dify ended the stream without message_end")
        yield FinalAnswer(
            "".join(pieces),
            citations=citations,
            usage=usage,
            meta={"responder": "dify", "_upstream": {"dify_conversation_id": conversation_id}},
        )

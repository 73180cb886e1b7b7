"""A fake of Dify's Service API for a chat app: POST /v1/chat-messages and .../{task_id}/stop.

Faithful to Dify's docs and its source (api/core/app/apps/*/generate_response_converter.py,
base_app_generator.convert_to_event_stream, controllers/service_api): Bearer `app-...` keys;
errors as `{"code", "message", "status"}` (401 unauthorized, 400 invalid_param, 404 not_found
"Conversation Not Exists." also for another user's conversation, 429 rate_limit_error, 500
internal_server_error); `inputs`, `query` and `user` required; blocking and streaming modes.
A stream is `data: {json}` events, each carrying event, conversation_id, message_id, created_at
and task_id: optional workflow_started / node_started / node_finished / workflow_finished (a
chatflow), `message` pieces (or `agent_thought` + `agent_message` pieces in agent mode), an
optional `message_replace` (output moderation), then `message_end` with metadata.usage and
metadata.retriever_resources; an `error` event on failure; and a bare `event: ping` (no data
line, exactly as Dify writes it) every `ping_interval` idle seconds. Conversations persist per
user.

Stop: POST /v1/chat-messages/{task_id}/stop {user} answers {"result": "success"} (for any task id,
as Dify does) and, when the task is that user's running stream, ends it early. Like Dify (whose
pipeline treats QueueStopEvent like a message end) the stopped stream still closes with a
`message_end` for the partial answer; set `message_end_on_stop = False` for a stream that just ends.

Simplified on purpose: tokens are words; prices in usage are nominal; no files, TTS, annotation
replies or feedback endpoints; agent_thought is a single empty thought; a malformed
conversation_id is 400 invalid_param. Added for tests: Retry-After on 429 (Dify's own 429 carries
none) and task_id on `error` events (Dify's docs list it, its converter omits it).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests.fakes.server import (
    Exchange,
    FakeUpstream,
    Knobs,
    RecordedRequest,
    answer_words,
    dumps,
    pieces,
)

SAMPLE_RESOURCE: dict[str, Any] = {
    "position": 1,
    "dataset_id": "9f1c2a70-5d0e-4c47-9b52-3f1f0c0a0001",
    "dataset_name": "Shop FAQ",
    "document_id": "9f1c2a70-5d0e-4c47-9b52-3f1f0c0a0002",
    "document_name": "shipping.md",
    "segment_id": "9f1c2a70-5d0e-4c47-9b52-3f1f0c0a0003",
    "score": 0.92,
    "content": "Orders ship within two working days.",
}
WORKFLOW_ID = "9f1c2a70-5d0e-4c47-9b52-3f1f0c0a0004"
STOP_PATH = re.compile(r"/v1/chat-messages/([^/]+)/stop")


def _err(status: int, code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "status": status}


def _usage(prompt: int, completion: int, latency: float) -> dict[str, Any]:
    def price(tokens: int) -> str:
        return f"{tokens * 0.000001:.7f}"

    return {
        "prompt_tokens": prompt,
        "prompt_unit_price": "0.001",
        "prompt_price_unit": "0.001",
        "prompt_price": price(prompt),
        "completion_tokens": completion,
        "completion_unit_price": "0.001",
        "completion_price_unit": "0.001",
        "completion_price": price(completion),
        "total_tokens": prompt + completion,
        "total_price": price(prompt + completion),
        "currency": "USD",
        "latency": round(latency, 4),
    }


@dataclass
class DifyKnobs(Knobs):
    agent_mode: bool = False  # agent_thought + agent_message events; blocking mode refused
    workflow_events: bool = False  # a chatflow: workflow_* / node_* events around the answer
    replace_with: str | None = None  # one message_replace event with this answer
    ping_interval: float = 10.0  # `event: ping` after this many idle seconds in a stream
    message_end_on_stop: bool = True  # Dify ends a stopped stream with message_end
    retriever_resources: list[dict[str, Any]] = field(
        default_factory=lambda: [dict(SAMPLE_RESOURCE)]
    )


@dataclass
class Conversation:
    id: str
    user: str
    turns: list[tuple[str, str]] = field(default_factory=list)  # (query, answer)


@dataclass
class _Task:
    user: str
    ex: Exchange
    stopped: bool = False


@dataclass(eq=False)
class DifyFake(FakeUpstream, DifyKnobs):
    """The fake; an ASGI app. `api_key` is the app key it accepts."""

    knobs_type: ClassVar[type[Knobs]] = DifyKnobs
    blocking_error_status: ClassVar[int] = 400
    api_key: str = "app-test"
    conversations: dict[str, Conversation] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)  # task ids of every stop request
    _tasks: dict[str, _Task] = field(default_factory=dict, repr=False)

    def reset(self) -> None:
        super().reset()
        self.conversations.clear()
        self.stopped.clear()

    def error_body(self, status: int) -> dict[str, Any]:
        if status == 429:
            return _err(429, "rate_limit_error", "Rate Limit Error")
        if status == 400:
            return _err(400, "completion_request_error", "[fake] Error: the model failed")
        return _err(500, "internal_server_error", "Internal Server Error, please contact support.")

    async def idle(self, ex: Exchange, k: DifyKnobs, seconds: float) -> bool:
        if not ex.started or k.ping_interval <= 0:
            return await ex.pause(seconds)
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > k.ping_interval:
            if not await ex.pause(k.ping_interval):
                return False
            await ex.write(b"event: ping\n\n")
        return await ex.pause(left)

    async def handle(self, ex: Exchange, rec: RecordedRequest) -> None:
        stop = STOP_PATH.fullmatch(ex.path)
        if ex.method != "POST" or not (ex.path == "/v1/chat-messages" or stop):
            msg = "The requested URL was not found on the server."
            await ex.json(404, _err(404, "not_found", msg))
            return
        auth = ex.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.api_key:
            msg = "Access token is invalid" if token else "Authorization header must be provided"
            await ex.json(401, _err(401, "unauthorized", msg))
            return
        rec.authorized = True
        body = rec.json
        if not isinstance(body, dict):
            msg = "The browser (or proxy) sent a request that this server could not understand."
            await ex.json(400, _err(400, "bad_request", msg))
            return
        user = body.get("user")
        if not isinstance(user, str) or not user:
            await ex.json(400, _err(400, "invalid_param", "Arg user must be provided."))
            return
        if stop:
            task = self._tasks.get(stop.group(1))
            if task is not None and task.user == user:
                task.stopped = True
                task.ex.interrupted.set()
            self.stopped.append(stop.group(1))
            await ex.json(200, {"result": "success"})
            return
        await self._chat(ex, rec, body, user)

    async def _chat(
        self, ex: Exchange, rec: RecordedRequest, body: dict[str, Any], user: str
    ) -> None:
        query, inputs = body.get("query"), body.get("inputs")
        if not isinstance(query, str) or not query:
            await ex.json(400, _err(400, "invalid_param", "query is required"))
            return
        if not isinstance(inputs, dict):
            await ex.json(400, _err(400, "invalid_param", "inputs is required"))
            return
        conv: Conversation | None = None
        if conv_id := body.get("conversation_id"):
            try:
                uuid.UUID(str(conv_id))
            except ValueError:
                await ex.json(400, _err(400, "invalid_param", f"{conv_id} is not a valid uuid."))
                return
            conv = self.conversations.get(str(conv_id))
            if conv is None or conv.user != user:
                await ex.json(404, _err(404, "not_found", "Conversation Not Exists."))
                return
        k: DifyKnobs = self.next_knobs()
        streaming = body.get("response_mode") == "streaming"
        if k.agent_mode and not streaming:
            msg = "Agent Chat App does not support blocking mode"
            await ex.json(400, _err(400, "invalid_param", msg))
            return
        if not await self.before_headers(ex, k, streaming=streaming):
            return
        if conv is None:
            conv = Conversation(str(uuid.uuid4()), user)
            self.conversations[conv.id] = conv
        history = sum(len(q.split()) + len(a.split()) for q, a in conv.turns)
        turn = _Turn(
            conv=conv,
            query=query,
            words=answer_words(query, k.answer_tokens),
            prompt_tokens=history + len(query.split()),
            task_id=str(uuid.uuid4()),
            message_id=str(uuid.uuid4()),
        )
        if not streaming:
            await self._blocking(ex, rec, k, turn)
            return
        task = self._tasks[turn.task_id] = _Task(user, ex)  # stop works on streams only
        try:
            await self._stream(ex, rec, k, turn, task, inputs)
        finally:
            del self._tasks[turn.task_id]

    def _metadata(self, k: DifyKnobs, turn: _Turn, completion: int) -> dict[str, Any]:
        latency = time.monotonic() - turn.started
        return {
            "usage": _usage(turn.prompt_tokens, completion, latency),
            "retriever_resources": [dict(r) for r in k.retriever_resources],
        }

    async def _blocking(
        self, ex: Exchange, rec: RecordedRequest, k: DifyKnobs, turn: _Turn
    ) -> None:
        if not await self.generation_time(ex, k, len(turn.words)):
            return
        answer = k.replace_with if k.replace_with is not None else " ".join(turn.words)
        response = {
            "event": "message",
            "task_id": turn.task_id,
            "id": turn.message_id,
            "message_id": turn.message_id,
            "conversation_id": turn.conv.id,
            "mode": "advanced-chat" if k.workflow_events else "chat",
            "answer": answer,
            "metadata": self._metadata(k, turn, len(turn.words)),
            "created_at": turn.created_at,
        }
        if k.mode == "malformed":
            await ex.start(200, "application/json")
            await ex.finish(b"{not json")
        elif k.mode == "drop":
            await self.drop_body(ex, dumps(response))
        else:
            rec.tokens_sent = len(turn.words)
            turn.conv.turns.append((turn.query, answer))
            await ex.json(200, response)

    async def _stream(
        self,
        ex: Exchange,
        rec: RecordedRequest,
        k: DifyKnobs,
        turn: _Turn,
        task: _Task,
        inputs: dict[str, Any],
    ) -> None:
        base = {
            "conversation_id": turn.conv.id,
            "message_id": turn.message_id,
            "created_at": turn.created_at,
            "task_id": turn.task_id,
        }
        run_id = str(uuid.uuid4())

        async def event(name: str, **data: Any) -> None:
            await ex.write(b"data: " + dumps({"event": name, **base, **data}) + b"\n\n")

        async def node(name: str, node_id: str, index: int, **extra: Any) -> None:
            data = {
                "id": f"{run_id}-{node_id}",
                "node_id": node_id,
                "node_type": node_id,
                "title": node_id.upper(),
                "index": index,
                "predecessor_node_id": None,
                "created_at": turn.created_at,
                **extra,
            }
            await event(name, workflow_run_id=run_id, data=data)

        async def emit(i: int, piece: str) -> None:
            name = "agent_message" if k.agent_mode else "message"
            await event(name, id=turn.message_id, answer=piece)

        async def stream_error() -> None:
            await event("error", **self.error_body(400))
            await ex.finish()

        await ex.start(200, "text/event-stream; charset=utf-8")
        done = {
            "status": "succeeded",
            "outputs": {},
            "elapsed_time": 0.01,
            "execution_metadata": {},
        }
        if k.workflow_events:
            started = {"id": run_id, "workflow_id": WORKFLOW_ID, "inputs": inputs}
            await event("workflow_started", workflow_run_id=run_id, data=started)
            await node("node_started", "start", 1)
            await node("node_finished", "start", 1, **done)
            await node("node_started", "llm", 2)
        if k.agent_mode:
            thought = {"id": str(uuid.uuid4()), "position": 1, "thought": "", "observation": ""}
            await event("agent_thought", **thought, tool="", tool_input="", message_files=[])
        parts = pieces(turn.words)
        if not await self.run_tokens(ex, rec, k, parts, emit, stream_error):
            if not task.stopped:
                return
            rec.outcome = "stopped"
            if not k.message_end_on_stop:
                await ex.finish()
                return
        answer = "".join(parts[: rec.tokens_sent])
        if k.workflow_events and not task.stopped:
            await node("node_finished", "llm", 2, **done)
            finished = {
                "id": run_id,
                "workflow_id": WORKFLOW_ID,
                **done,
                "outputs": {"answer": answer},
            }
            await event("workflow_finished", workflow_run_id=run_id, data=finished)
        if k.replace_with is not None:
            answer = k.replace_with
            await event("message_replace", answer=answer, reason="output_moderation")
        metadata = self._metadata(k, turn, rec.tokens_sent)
        turn.conv.turns.append((turn.query, answer))
        await event("message_end", id=turn.message_id, metadata=metadata, files=None)
        await ex.finish()


@dataclass
class _Turn:
    conv: Conversation
    query: str
    words: list[str]
    prompt_tokens: int
    task_id: str
    message_id: str
    created_at: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.monotonic)

"""The SSE fallback transport resumes exactly like the WebSocket."""

from __future__ import annotations

import asyncio
import json

import httpx

from frontdesk.services import Services
from tests.conftest import ORIGIN, Visitor


async def test_stream_resumes_after_seq_and_follows_live(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    conversation_id = await visitor.conversation()
    await visitor.send(conversation_id, "first")
    await services.turns.drain()
    headers = {
        **visitor.auth,
        "Origin": ORIGIN,
        "Accept": "text/event-stream",
        "Last-Event-ID": "1",
    }
    url = f"http://{live_server}/api/widget/v1/conversations/{conversation_id}/stream"
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        joined_data = ""
        async for line in lines:
            if line.startswith("data: "):
                joined_data = line[6:]
                break
        joined = json.loads(joined_data)
        assert joined["type"] == "joined"
        assert [m["seq"] for m in joined["messages"]] == [2]
        send = asyncio.create_task(visitor.send(conversation_id, "second"))
        seen: list[int] = []
        ids: list[str] = []
        async for line in lines:
            if line.startswith("id: "):
                ids.append(line[4:])
            if line.startswith("data: "):
                frame = json.loads(line[6:])
                if frame["type"] == "message":
                    seen.append(frame["message"]["seq"])
                    if frame["message"]["role"] == "assistant":
                        break
        await send
        assert seen == [3, 4] and ids == ["3", "4"]


async def test_stream_needs_access(client: httpx.AsyncClient, visitor: Visitor) -> None:
    response = await client.get(
        "/api/widget/v1/conversations/conv_nope/stream", headers=visitor.auth
    )
    assert response.status_code == 404

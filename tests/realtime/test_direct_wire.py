"""Frames written straight to uvicorn's transport (`frontdesk/realtime/wire.py`), and the ASGI
`send` wherever that does not apply: found only on `websockets-sansio` without compression, the
bytes valid frames, nothing written after a close, pings still working, and `/ws/chat` keeping
every guarantee on both paths (order, no loss or duplicate, counters, slow consumers)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from frontdesk.config import Settings
from frontdesk.realtime.outbox import Outbox
from frontdesk.realtime.wire import CLOSED, FULL, WRITTEN, DirectWire, SentFrames, direct_wire
from frontdesk.realtime.wire import text_frame as wire_frame
from frontdesk.server import uvicorn_config
from frontdesk.services import Services
from tests.conftest import ORIGIN, Visitor, serve_uvicorn
from tests.realtime.test_hub import eventually, joined, store
from tests.realtime.wsclient import Socket, chat_socket


class Count:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


@asynccontextmanager
async def uvicorn_serving(app: Any, **options: Any) -> AsyncIterator[str]:
    """`app` behind a real uvicorn server on loopback, with `options` for its `Config`."""

    def config(port: int) -> uvicorn.Config:
        return uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="off", log_config=None, **options
        )

    async with serve_uvicorn(config) as address:
        yield address


class Probe:
    """A bare ASGI WebSocket app: accepts, looks for the direct wire, then runs `script`."""

    def __init__(self, script: Any = None, wrap_send: bool = False) -> None:
        self.script = script
        self.wrap_send = wrap_send
        self.wires: list[DirectWire | None] = []
        self.sent = Count()
        self.done = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        if self.wrap_send:  # what a middleware does
            inner = send

            async def wrapped(message: Any) -> None:
                await inner(message)

            send = wrapped
        await receive()
        await send({"type": "websocket.accept"})
        wire = direct_wire(send, SentFrames(self.sent))
        self.wires.append(wire)
        try:
            if self.script is not None:
                await self.script(wire, send, receive)
            else:
                while (await receive())["type"] != "websocket.disconnect":
                    pass
        finally:
            self.done.set()


@pytest.mark.parametrize(
    ("ws", "deflate", "client_compression", "wrap_send", "direct"),
    [
        ("websockets-sansio", False, "deflate", False, True),  # the client offers, refused
        ("websockets-sansio", False, None, False, True),
        ("websockets-sansio", True, None, False, True),  # offered by the server, not asked for
        ("websockets-sansio", True, "deflate", False, False),  # negotiated: frames differ
        ("websockets-sansio", False, None, True, False),  # a send that is not uvicorn's own
        ("wsproto", False, None, False, False),
        ("websockets", False, None, False, False),
    ],
)
async def test_the_direct_wire_is_found_only_where_it_applies(
    ws: str, deflate: bool, client_compression: str | None, wrap_send: bool, direct: bool
) -> None:
    probe = Probe(wrap_send=wrap_send)
    options = {"ws": ws, "ws_per_message_deflate": deflate}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("warnings.warn", lambda *a, **k: None)  # the legacy implementation warns
        async with (
            uvicorn_serving(probe, **options) as address,
            connect(f"ws://{address}/", compression=client_compression),
        ):
            await eventually(lambda: len(probe.wires) == 1)
    assert (probe.wires[0] is not None) is direct


async def test_direct_frames_are_whole_in_order_and_nothing_follows_the_close() -> None:
    sizes = [0, 1, 125, 126, 65535, 65536, 200_000]  # every length encoding, both sides of it
    results: list[int] = []

    async def script(wire: DirectWire | None, send: Any, receive: Any) -> None:
        assert wire is not None
        for n, size in enumerate(sizes):
            text = json.dumps({"n": n, "pad": "é" * (size // 2)})  # multi-byte UTF-8 too
            results.append(wire.write(wire_frame(text.encode()), 1 << 30))
        await send({"type": "websocket.send", "text": "through asgi"})  # the two paths mix
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        results.append(wire.write(wire_frame(b"after close"), 1 << 30))
        await receive()

    probe = Probe(script)
    async with uvicorn_serving(probe, ws="websockets-sansio") as address:
        async with connect(f"ws://{address}/", max_size=None, compression=None) as client:
            received = []
            try:
                while True:
                    received.append(await asyncio.wait_for(client.recv(), 5))
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4000
        await asyncio.wait_for(probe.done.wait(), 5)
    assert results == [WRITTEN] * len(sizes) + [CLOSED]
    assert [json.loads(r)["n"] for r in received[:-1]] == list(range(len(sizes)))
    assert [len(json.loads(r)["pad"]) for r in received[:-1]] == [s // 2 for s in sizes]
    assert received[-1] == "through asgi"
    await asyncio.sleep(0)  # the counter is added once per loop turn
    assert probe.sent.value == len(sizes)


async def test_a_full_transport_buffer_is_refused_and_a_gone_client_is_closed() -> None:
    outcome: list[int] = []
    gone = asyncio.Event()

    async def script(wire: DirectWire | None, send: Any, receive: Any) -> None:
        assert wire is not None
        frame = wire_frame(b"x" * 50_000)
        while len(outcome) < 2000:  # the client never reads: the buffer must fill
            done = wire.write(frame, 256 * 1024)
            outcome.append(done)
            if done != WRITTEN:
                break
            await asyncio.sleep(0)
        gone.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass
        outcome.append(wire.write(frame, 1 << 30))

    probe = Probe(script)
    async with uvicorn_serving(probe, ws="websockets-sansio") as address:
        host, port = address.split(":")
        with socket.socket() as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect((host, int(port)))
            raw.setblocking(False)
            async with connect(
                f"ws://{address}/", sock=raw, compression=None, max_queue=1
            ) as client:
                await asyncio.wait_for(gone.wait(), 10)
                client.transport.abort()  # gone without a close
        await asyncio.wait_for(probe.done.wait(), 5)
    assert outcome[-2] == FULL and all(done == WRITTEN for done in outcome[:-2])
    assert outcome[-1] == CLOSED


async def test_protocol_pings_keep_working_between_direct_frames() -> None:
    async def script(wire: DirectWire | None, send: Any, receive: Any) -> None:
        assert wire is not None
        for n in range(300):
            assert wire.write(wire_frame(json.dumps({"n": n}).encode()), 1 << 30) == WRITTEN
            await asyncio.sleep(0.005)  # about 1.5 s, with a ping every 0.1 s
        await send({"type": "websocket.close", "code": 1000})
        await receive()

    probe = Probe(script)
    options = {"ws": "websockets-sansio", "ws_ping_interval": 0.1, "ws_ping_timeout": 0.5}
    numbers = []
    async with (
        uvicorn_serving(probe, **options) as address,
        connect(f"ws://{address}/", compression=None, ping_interval=None) as client,
    ):
        try:
            while True:
                numbers.append(json.loads(await asyncio.wait_for(client.recv(), 5))["n"])
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1000  # not 1011
    assert numbers == list(range(300))


# /ws/chat on both paths


@asynccontextmanager
async def frontdesk_serving(app: FastAPI, settings: Settings, ws: str) -> AsyncIterator[str]:
    """FrontDesk behind uvicorn with its own options, the WebSocket implementation replaced."""

    def config(port: int) -> uvicorn.Config:
        built = uvicorn_config(app, settings, host="127.0.0.1", port=port)
        built.lifespan = "off"
        built.ws = ws
        return built

    async with serve_uvicorn(config) as address:
        yield address


def outboxes(services: Services, conversation_id: str) -> list[Outbox]:
    channel = services.hub.channel(conversation_id)
    assert channel is not None
    return [feed.outbox for feed in channel.feeds]


def sent_total() -> float:
    value = REGISTRY.get_sample_value(
        "frontdesk_websocket_frames_sent_total", {"endpoint": "/ws/chat"}
    )
    return value or 0.0


async def seqs_until(socket: Socket, last: int) -> list[int]:
    frames = await socket.recv_until(
        lambda f: f["type"] == "message" and f["message"]["seq"] == last, timeout=15
    )
    return [f["message"]["seq"] for f in frames if f["type"] == "message"]


@pytest.mark.parametrize(
    ("ws", "deflate", "directs"),
    [
        ("websockets-sansio", False, [True, True, True]),
        ("websockets-sansio", True, [True, False, False]),  # the last two ask for compression
        ("wsproto", False, [False, False, False]),
    ],
)
async def test_fan_out_is_complete_and_in_order_on_either_path(
    app: FastAPI,
    settings: Settings,
    services: Services,
    visitor: Visitor,
    ws: str,
    deflate: bool,
    directs: list[bool],
) -> None:
    settings.ws_per_message_deflate = deflate
    conversation_id = await visitor.conversation()
    async with frontdesk_serving(app, settings, ws) as address:
        sockets, head = [], 0
        for i in range(3):
            compression = "deflate" if i else None
            connection = await connect(
                f"ws://{address}/ws/chat",
                origin=ORIGIN,
                compression=compression,  # type: ignore[arg-type]
            )
            chat = Socket(connection)
            await chat.send({"type": "auth", "access_token": visitor.access_token})
            assert (await chat.recv())["type"] == "ready"
            head = (await joined(chat, conversation_id))["last_seq"]
            sockets.append(chat)
        assert sorted(o.direct for o in outboxes(services, conversation_id)) == sorted(directs)
        before = sent_total()
        frames_before = sum(o.frames_sent for o in outboxes(services, conversation_id))
        for i in range(40):
            await store(services, conversation_id, f"m{i}")
        for chat in sockets:
            assert await seqs_until(chat, head + 40) == list(range(head + 1, head + 41))
        frames_after = sum(o.frames_sent for o in outboxes(services, conversation_id))
        await asyncio.sleep(0)
        assert frames_after - frames_before == 3 * 40
        assert sent_total() - before == 3 * 40  # direct frames counted like the others
        for chat in sockets:
            await chat.close()


def server_socket(outbox: Outbox) -> socket.socket:
    """The server's side of an outbox's connection (to shrink its kernel buffer in a test)."""
    if outbox._wire is not None:
        transport = outbox._wire.transport
    else:  # the ASGI path: the outbox writes through the chat socket's uvicorn `send`
        chat = outbox._write.__self__  # type: ignore[attr-defined]
        transport = chat._asgi_send.__self__.transport
    found: socket.socket = transport.get_extra_info("socket")  # type: ignore[attr-defined]
    return found


@pytest.mark.parametrize("direct", [True, False])
async def test_a_slow_consumer_is_closed_4508_and_others_get_everything(
    app: FastAPI, settings: Settings, services: Services, visitor: Visitor, direct: bool
) -> None:
    settings.ws_send_queue_bytes = 64 * 1024
    settings.ws_per_message_deflate = not direct  # the slow client asks for it: the ASGI path
    conversation_id = await visitor.conversation()
    async with frontdesk_serving(app, settings, "websockets-sansio") as address:
        fast = await chat_socket(address, visitor.access_token)
        start = (await joined(fast, conversation_id))["last_seq"]
        host, port = address.split(":")
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few frames
        raw.connect((host, int(port)))
        raw.setblocking(False)
        connection = await connect(
            f"ws://{address}/ws/chat",
            origin=ORIGIN,  # type: ignore[arg-type]
            sock=raw,
            max_queue=1,
            compression=None if direct else "deflate",
        )
        slow = Socket(connection)
        await slow.send({"type": "auth", "access_token": visitor.access_token})
        assert (await slow.recv())["type"] == "ready"
        await joined(slow, conversation_id)
        # the kernel's buffer on the server's side as small as a slow link's (else megabytes)
        slow_port = raw.getsockname()[1]
        for outbox in outboxes(services, conversation_id):
            server_side = server_socket(outbox)
            if server_side.getpeername()[1] == slow_port:
                assert outbox.direct is direct
                server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        count = 60  # random text: about 1 MB even compressed
        for i in range(count):
            await store(services, conversation_id, f"{i}:" + os.urandom(16_000).hex())
        assert await seqs_until(fast, start + count) == list(range(start + 1, start + count + 1))
        await eventually(lambda: services.realtime_stats["slow_consumers"] == 1)

        got = []  # the slow client reads again: what was sent, in order, then the close
        code = None
        try:
            while True:
                frame = await slow.recv()
                if frame["type"] == "message":
                    got.append(frame["message"]["seq"])
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        assert code == 4508
        assert got == list(range(start + 1, start + 1 + len(got))) and len(got) < count
        await fast.close()


async def test_a_slow_consumer_that_never_reads_again_is_cut_off(
    app: FastAPI, settings: Settings, services: Services, visitor: Visitor
) -> None:
    # far more than the kernel's buffers and the client's own hold: left in the transport
    settings.ws_send_queue_bytes = 256 * 1024
    settings.ws_pong_timeout_s = 0.5  # how long its buffer may be held after the overflow
    conversation_id = await visitor.conversation()
    async with frontdesk_serving(app, settings, "websockets-sansio") as address:
        fast = await chat_socket(address, visitor.access_token)
        start = (await joined(fast, conversation_id))["last_seq"]
        host, port = address.split(":")
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect((host, int(port)))
        raw.setblocking(False)
        connection = await connect(
            f"ws://{address}/ws/chat",
            origin=ORIGIN,  # type: ignore[arg-type]
            sock=raw,
            max_queue=1,
            compression=None,
        )
        slow = Socket(connection)
        await slow.send({"type": "auth", "access_token": visitor.access_token})
        assert (await slow.recv())["type"] == "ready"
        await joined(slow, conversation_id)
        slow_port = raw.getsockname()[1]
        for outbox in outboxes(services, conversation_id):
            server_side = server_socket(outbox)
            if server_side.getpeername()[1] == slow_port:
                server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        count = 40
        for i in range(count):
            await store(services, conversation_id, f"{i}:" + os.urandom(16_000).hex())
        assert await seqs_until(fast, start + count) == list(range(start + 1, start + count + 1))
        await eventually(lambda: services.realtime_stats["slow_consumers"] == 1)
        # It does not read for longer than `ws_pong_timeout_s`: the server's close (behind the
        # frames it has not taken) never reaches it, the connection is aborted instead.
        await asyncio.sleep(1.0)
        assert len(outboxes(services, conversation_id)) == 1  # the fast one is still there
        assert await slow.closed_with() is None  # no close frame: the connection was reset
        await store(services, conversation_id, "after")
        assert await seqs_until(fast, start + count + 1) == [start + count + 1]
        await fast.close()

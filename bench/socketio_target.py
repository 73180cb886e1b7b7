"""The comparison target of bench/realtime.py: python-socketio on FrontDesk's uvicorn settings.

A python-socketio `AsyncServer` (`async_mode="asgi"`, WebSocket transport only, no HTTP
compression) served by `frontdesk.server.uvicorn_config` (the same uvicorn options FrontDesk uses:
frame size limit, protocol pings, per-message deflate off), with the WebSocket implementation
chosen by `--ws`. Clients speak Engine.IO v4 / Socket.IO v5 over a plain WebSocket
(`/socket.io/?EIO=4&transport=websocket`), join the room `bench` with the event
`join` (acknowledged), and receive `message` events.

`POST /publish {"n", "t"}` emits one `message` event to the room, shaped and sized like a
FrontDesk `message` frame, with the publisher's timestamp in the text, so that the bench measures
delivery latency the same way for both targets. `GET /health` answers when the server is up.

    .venv/bin/python -m bench.socketio_target --port 8100 --ws wsproto

Needs `pip install python-socketio` (not a FrontDesk dependency; used by the bench only).
"""

from __future__ import annotations

import argparse
import resource
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from frontdesk.config import load_settings
from frontdesk.server import WS_IMPLEMENTATION, uvicorn_config

ROOM = "bench"


def build_app() -> Any:
    settings = load_settings()
    sio = socketio.AsyncServer(
        async_mode="asgi",
        transports=["websocket"],
        cors_allowed_origins="*",
        http_compression=False,
        ping_interval=settings.ws_heartbeat_s,
        ping_timeout=settings.ws_pong_timeout_s,
        max_http_buffer_size=settings.ws_max_frame_bytes,
        logger=False,
        engineio_logger=False,
    )
    conversation_id = f"cnv_{uuid.uuid4().hex[:20]}"

    @sio.event
    async def join(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    async def publish(request: Request) -> JSONResponse:
        body = await request.json()
        n, sent = int(body["n"]), float(body["t"])
        message = {
            "id": f"msg_{uuid.uuid4().hex[:20]}",
            "conversation_id": conversation_id,
            "seq": n + 1,
            "role": "visitor",
            "text": f"bench n={n} t={sent:.6f} " + "x" * 40,
            "created_at": datetime.now(UTC).isoformat(),
            "client_id": str(uuid.uuid4()),
            "meta": None,
        }
        started = time.perf_counter()
        await sio.emit("message", {"type": "message", "message": message}, room=ROOM)
        return JSONResponse(
            {"message": message, "emit_ms": (time.perf_counter() - started) * 1000},
            status_code=202,
        )

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    web = Starlette(routes=[Route("/publish", publish, methods=["POST"]), Route("/health", health)])
    return socketio.ASGIApp(sio, other_asgi_app=web, socketio_path="socket.io")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="python-socketio comparison target")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", default=WS_IMPLEMENTATION, help="uvicorn WebSocket implementation")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    settings = load_settings()
    config = uvicorn_config(build_app(), settings, host=args.host, port=args.port)
    config.ws = args.ws
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()

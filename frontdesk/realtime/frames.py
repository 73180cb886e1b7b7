"""The WebSocket frames of `/ws/chat` and `/ws/events` (docs/protocol.md), and close codes.

Client frames are parsed into small pydantic models; anything else is answered with an `error`
frame (`invalid_request`), never a crash. Server frames are plain dicts serialised with orjson.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHORIZED = 4401
CLOSE_ORIGIN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_RATE_LIMITED = 4429
CLOSE_SLOW_CONSUMER = 4508  # the connection's send queue passed its byte limit
CLOSE_SHUTTING_DOWN = 1012


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Auth(_Frame):
    type: Literal["auth"]
    access_token: StrictStr | None = Field(default=None, max_length=4096)
    api_key: StrictStr | None = Field(default=None, max_length=200)


class Join(_Frame):
    type: Literal["join"]
    conversation_id: StrictStr = Field(max_length=64)
    after_seq: StrictInt = Field(default=0, ge=0, le=2**31)


class Leave(_Frame):
    type: Literal["leave"]
    conversation_id: StrictStr = Field(max_length=64)


class Send(_Frame):
    type: Literal["send"]
    conversation_id: StrictStr = Field(max_length=64)
    client_id: StrictStr = Field(min_length=1, max_length=64)
    text: StrictStr = Field(max_length=100_000)


class Typing(_Frame):
    type: Literal["typing"]
    conversation_id: StrictStr = Field(max_length=64)


class Ping(_Frame):
    type: Literal["ping"]


class Since(_Frame):
    epoch: StrictStr = Field(max_length=64)
    offset: StrictInt = Field(ge=0)


class Subscribe(_Frame):
    type: Literal["subscribe"]
    types: list[Annotated[str, Field(max_length=64)]] = Field(default=["*"], max_length=50)
    since: Since | None = None
    site_id: StrictStr | None = Field(default=None, max_length=40)


ChatFrame = Annotated[Auth | Join | Leave | Send | Typing | Ping, Field(discriminator="type")]
EventsFrame = Annotated[Auth | Subscribe | Ping, Field(discriminator="type")]
chat_frames: TypeAdapter[Auth | Join | Leave | Send | Typing | Ping] = TypeAdapter(ChatFrame)
events_frames: TypeAdapter[Auth | Subscribe | Ping] = TypeAdapter(EventsFrame)


def error_frame(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}


def encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()

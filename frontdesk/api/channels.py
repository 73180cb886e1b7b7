"""Inbound channel messages: `POST /api/channels/{channel_id}/messages`, signed per Standard
Webhooks with the channel's secret (`webhook-id`, `webhook-timestamp` within 5 minutes,
`webhook-signature`). A repeated `webhook-id` creates nothing and answers with the original ids.
The bot answers as in the widget; replies go to the channel's callback URL, signed the same way.
"""

from __future__ import annotations

import time
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from frontdesk.actions.channels import do_receive_channel_message
from frontdesk.actions.messages import check_message_text
from frontdesk.api.deps import ServicesDep
from frontdesk.errors import AppError, invalid_request, not_found, unauthorized
from frontdesk.models import Channel
from frontdesk.webhooks.signing import verify

router = APIRouter(prefix="/api/channels", tags=["channels"])
TOLERANCE_S = 300


class ChannelMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    external_user_id: StrictStr = Field(min_length=1, max_length=200)
    text: StrictStr = Field(max_length=100_000)


@router.post("/{channel_id}/messages", status_code=202, summary="A message from a channel")
async def channel_message(
    channel_id: str,
    request: Request,
    services: ServicesDep,
    webhook_id: Annotated[str, Header(max_length=200)],
    webhook_timestamp: Annotated[str, Header(max_length=20)],
    webhook_signature: Annotated[str, Header(max_length=2000)],
) -> JSONResponse:
    body = await request.body()
    async with services.db.read_scope() as session:
        channel = await session.get(Channel, channel_id) if len(channel_id) <= 40 else None
    if channel is None:
        raise not_found("No such channel.")
    if not webhook_timestamp.isdigit():
        raise unauthorized("webhook-timestamp must be unix seconds.")
    secret = services.box.open(channel.secret_sealed)
    now = int(time.time())
    if not verify(
        secret,
        webhook_id,
        int(webhook_timestamp),
        body,
        webhook_signature,
        now=now,
        tolerance_s=TOLERANCE_S,
    ):
        raise AppError("unauthorized", "The signature is invalid or the timestamp is stale.", 401)
    try:
        message = ChannelMessage.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise invalid_request("Send {external_user_id, text} as JSON.") from exc
    text = check_message_text(message.text, max_chars=services.settings.max_message_chars)
    async with services.db.session_scope() as session:
        inbound = await do_receive_channel_message(
            session,
            channel,
            webhook_id=webhook_id,
            external_user_id=message.external_user_id,
            text=text,
        )
    if inbound.stored is not None and inbound.conversation.handler == "bot":
        site = await services.sites.get(channel.site_id)
        services.turns.start(site, inbound.conversation.visitor_id, inbound.stored.message)
    return JSONResponse(
        {
            "conversation_id": inbound.conversation.id,
            "message_id": inbound.message_id,
            "duplicate": inbound.duplicate,
        },
        status_code=200 if inbound.duplicate else 202,
    )

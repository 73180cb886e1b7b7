"""Inbound channels: a signed external message becomes a conversation, the bot's answer goes to
the channel's callback, signed; bad signatures, stale timestamps and replays create nothing."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from frontdesk.services import Services
from tests.conftest import make_site
from tests.fakes import FakeServer
from tests.fakes.receiver import WebhookReceiver
from tests.integration.test_webhooks import drain, hooks, hooks_app, http  # noqa: F401 - fixtures

API = "/api/v1"


def signed(secret: str, msg_id: str, body: bytes, at: int | None = None) -> dict[str, str]:
    stamp = datetime.fromtimestamp(at or int(time.time()), UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, stamp, body.decode()),
        "content-type": "application/json",
    }


async def test_channel_round_trip(http: httpx.AsyncClient, hooks: Services) -> None:  # noqa: F811
    hooks.worker.clock.thaw()  # signatures are checked against real time here
    site = await make_site(hooks)
    receiver = WebhookReceiver()
    async with FakeServer(receiver) as callback:
        created = await http.post(
            f"{API}/channels",
            json={"site_id": site.id, "name": "CRM chat", "callback_url": callback},
        )
        assert created.status_code == 201, created.text
        channel = created.json()
        assert channel["inbound_url"].endswith(f"/api/channels/{channel['id']}/messages")
        path = f"/api/channels/{channel['id']}/messages"
        body = json.dumps({"external_user_id": "crm-77", "text": "hello from the CRM"}).encode()
        first = await http.post(path, content=body, headers=signed(channel["secret"], "in_1", body))
        assert first.status_code == 202, first.text
        again = await http.post(path, content=body, headers=signed(channel["secret"], "in_1", body))
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert again.json()["message_id"] == first.json()["message_id"]

        await hooks.turns.drain()
        await drain(hooks)
        assert len(receiver.received) == 1  # the bot's answer, not the visitor's own message
        reply = receiver.received[0]
        payload = Webhook(channel["secret"]).verify(reply.body, reply.headers)
        assert payload["data"]["message"]["role"] == "assistant"
        assert payload["data"]["conversation_id"] == first.json()["conversation_id"]

        later = json.dumps({"external_user_id": "crm-77", "text": "one more"}).encode()
        second = await http.post(
            path, content=later, headers=signed(channel["secret"], "in_2", later)
        )
        assert second.json()["conversation_id"] == first.json()["conversation_id"]

        forged = await http.post(
            path, content=body, headers=signed("whsec_" + "A" * 44, "in_3", body)
        )
        assert forged.status_code == 401
        stale = await http.post(
            path,
            content=body,
            headers=signed(channel["secret"], "in_4", body, at=int(time.time()) - 3600),
        )
        assert stale.status_code == 401
        tampered = await http.post(
            path,
            content=body.replace(b"hello", b"HELLO"),
            headers=signed(channel["secret"], "in_5", body),
        )
        assert tampered.status_code == 401
        bad_body = b"{not json"
        invalid = await http.post(
            path, content=bad_body, headers=signed(channel["secret"], "in_6", bad_body)
        )
        assert invalid.status_code == 422
        unknown = await http.post(
            "/api/channels/chn_nope/messages",
            content=body,
            headers=signed(channel["secret"], "x", body),
        )
        assert unknown.status_code == 404
        listed = (await http.get(f"{API}/channels")).json()["channels"]
        assert [c["id"] for c in listed] == [channel["id"]]
        hidden = (await http.get(f"{API}/webhooks")).json()["webhooks"]
        assert hidden == []  # the channel's reply endpoint is not a user webhook

"""Operator notifications: preferences, live in-app delivery with unread counts, email through a
real SMTP server on loopback (aiosmtpd) immediately, after quiet hours, and as grouped digests,
SMTP failures retried, and activity retention."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI
from sqlalchemy import func, select, update

from frontdesk.events.recorder import record_event
from frontdesk.events.retention import ActivityRetention
from frontdesk.models import EventRecord, Job, Notification, SystemMeta
from frontdesk.services import Services
from tests.conftest import PUBLIC_URL, SiteInfo, Visitor, start_visitor
from tests.integration.test_admin_api import API, PASSWORD, api_key, operator
from tests.realtime.wsclient import Socket, open_socket


@dataclass
class Inbox:
    """What the SMTP server received; `refuse` answers the next N messages with a 451."""

    messages: list[EmailMessage] = field(default_factory=list)
    refuse: int = 0
    refused: int = 0
    arrived: asyncio.Event | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse > 0:
            self.refuse -= 1
            self.refused += 1
            return "451 4.3.0 Try again later"
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (the controller checks it by connecting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def mail(services: Services, smtp: tuple[Inbox, int]) -> Inbox:
    inbox, port = smtp
    settings = services.settings
    settings.smtp_host, settings.smtp_port, settings.smtp_security = "127.0.0.1", port, "none"
    settings.smtp_from = "FrontDesk <desk@shop.example>"
    return inbox


@pytest.fixture
async def dashboard(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="https://testserver",
        headers={"Origin": PUBLIC_URL},
    ) as http:
        yield http


async def sign_in(http: httpx.AsyncClient, services: Services, email_: str, role: str) -> str:
    await operator(services, email_, role)
    response = await http.post(f"{API}/auth/login", json={"email": email_, "password": PASSWORD})
    assert response.status_code == 200, response.text
    http.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return str(http.cookies["__Host-fd_session"])


async def set_preferences(http: httpx.AsyncClient, **prefs: Any) -> dict[str, Any]:
    response = await http.put(f"{API}/notifications/preferences", json=prefs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def settle(services: Services, rounds: int = 3) -> None:
    """Let the worker run its passes (fan-out, then the jobs it queued) to quiescence."""
    for _ in range(rounds):
        while await services.worker.run_once():
            pass
        await asyncio.sleep(0.02)


async def wait_for_mail(inbox: Inbox, count: int, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(inbox.messages) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{len(inbox.messages)} emails"
        await asyncio.sleep(0.05)


async def answered(visitor: Visitor, conversation: str, count: int = 1) -> None:
    """Wait until the assistant has answered `count` times."""
    for _ in range(200):
        response = await visitor.client.get(
            f"/api/widget/v1/conversations/{conversation}/messages", headers=visitor.auth
        )
        roles = [m["role"] for m in response.json()["messages"]]
        if roles.count("assistant") >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no answer: {roles}")


async def test_preferences_defaults_validation_and_operators_only(
    dashboard: httpx.AsyncClient, services: Services
) -> None:
    await sign_in(dashboard, services, "ann@shop.example", "viewer")
    prefs = (await dashboard.get(f"{API}/notifications/preferences")).json()
    assert prefs["in_app"] is True and prefs["email"] is False
    assert "lead.captured" in prefs["events"] and prefs["email_available"] is False

    saved = await set_preferences(
        dashboard,
        events=["message.*", "lead.captured"],
        email=True,
        email_mode="digest",
        digest_interval_min=30,
        quiet_hours={"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"},
    )
    again = (await dashboard.get(f"{API}/notifications/preferences")).json()
    assert again == saved and again["quiet_hours"]["timezone"] == "Europe/Berlin"

    bad_bodies: list[dict[str, Any]] = [
        {"quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}},
        {"events": ["<script>"]},
        {"email_mode": "hourly"},
        {"digest_interval_min": 1},
        {"surprise": True},
    ]
    for body in bad_bodies:
        response = await dashboard.put(f"{API}/notifications/preferences", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    bad_cursor = await dashboard.get(f"{API}/notifications", params={"cursor": "nope"})
    assert bad_cursor.status_code == 422
    empty_read = await dashboard.post(f"{API}/notifications/read", json={})
    assert empty_read.status_code == 422

    key = await api_key(services, ["admin"])
    async with httpx.AsyncClient(
        transport=dashboard._transport, base_url="https://testserver", headers=key
    ) as program:
        response = await program.get(f"{API}/notifications")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    anonymous = await httpx.AsyncClient(
        transport=dashboard._transport, base_url="https://testserver"
    ).get(f"{API}/notifications")
    assert anonymous.status_code == 401


async def test_in_app_notifications_arrive_live_with_unread_counts(
    live_server: str,
    dashboard: httpx.AsyncClient,
    client: httpx.AsyncClient,
    services: Services,
    site: SiteInfo,
) -> None:
    cookie = await sign_in(dashboard, services, "bo@shop.example", "operator")
    await set_preferences(dashboard, events=["conversation.started", "lead.captured"])
    socket: Socket = await open_socket(
        live_server,
        "/ws/events",
        origin=PUBLIC_URL,
        additional_headers={"Cookie": f"__Host-fd_session={cookie}"},
    )
    assert (await socket.recv())["type"] == "ready"

    visitor = await start_visitor(client, site.id)
    conversation = await visitor.conversation()
    response = await client.post(
        "/api/widget/v1/leads",
        headers=visitor.auth,
        json={"email": "lead@buyer.example", "name": "Lee <b>"},
    )
    assert response.status_code == 201, response.text

    frames = await socket.recv_until(
        lambda f: f["type"] == "notification" and f["notification"]["kind"] == "lead.captured"
    )
    notes = [f for f in frames if f["type"] == "notification"]
    kinds = [f["notification"]["kind"] for f in notes]
    assert kinds == ["conversation.started", "lead.captured"]
    assert notes[-1]["unread"] == 2
    lead_note = notes[-1]["notification"]
    assert lead_note["title"] == "New lead: Lee <b>, lead@buyer.example"  # plain text
    started = notes[0]["notification"]
    assert started["link"] == f"{PUBLIC_URL}/dashboard/inbox/{conversation}"

    listed = (await dashboard.get(f"{API}/notifications", params={"unread": "true"})).json()
    assert listed["unread"] == 2 and [n["kind"] for n in listed["items"]] == [
        "lead.captured",
        "conversation.started",
    ]
    read = await dashboard.post(f"{API}/notifications/read", json={"ids": [started["id"]]})
    assert read.json() == {"unread": 1}
    pushed = await socket.recv_until(lambda f: f["type"] == "notifications_read")
    assert pushed[-1] == {"type": "notifications_read", "unread": 1, "ids": [started["id"]]}
    assert (await dashboard.post(f"{API}/notifications/read", json={"all": True})).json() == {
        "unread": 0
    }
    page = (await dashboard.get(f"{API}/notifications", params={"limit": 1})).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = (
        await dashboard.get(f"{API}/notifications", params={"cursor": page["next_cursor"]})
    ).json()
    assert [n["id"] for n in rest["items"]] == [started["id"]] and rest["next_cursor"] is None
    assert all(n["read"] for n in page["items"] + rest["items"])
    await socket.close()


async def test_immediate_email_waits_for_quiet_hours(
    dashboard: httpx.AsyncClient,
    client: httpx.AsyncClient,
    services: Services,
    site: SiteInfo,
    mail: Inbox,
) -> None:
    await sign_in(dashboard, services, "cy@shop.example", "admin")
    clock = services.worker.clock
    clock.freeze()
    now = clock.now()
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    await set_preferences(
        dashboard,
        events=["conversation.started"],
        email=True,
        quiet_hours={"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")},
    )
    visitor = await start_visitor(client, site.id)
    await visitor.conversation()
    await settle(services)
    assert mail.messages == []  # quiet: held back, but the in-app notification is there
    listed = (await dashboard.get(f"{API}/notifications")).json()
    assert listed["unread"] == 1 and listed["items"][0]["email"] == "pending"

    clock.advance(2 * 3600)
    await settle(services)
    await wait_for_mail(mail, 1)
    message = mail.messages[0]
    assert message["To"] == "cy@shop.example"
    assert message["Subject"] == "[FrontDesk] A visitor started a conversation"
    html = message.get_body(("html",))
    assert html is not None and "Open in FrontDesk" in html.get_content()
    listed = (await dashboard.get(f"{API}/notifications")).json()
    assert listed["items"][0]["email"] == "sent"
    await settle(services)
    assert len(mail.messages) == 1  # sent once


async def test_digest_groups_events_and_smtp_failures_are_retried(
    dashboard: httpx.AsyncClient,
    client: httpx.AsyncClient,
    services: Services,
    site: SiteInfo,
    mail: Inbox,
) -> None:
    await sign_in(dashboard, services, "di@shop.example", "operator")
    clock = services.worker.clock
    clock.freeze()
    await set_preferences(
        dashboard,
        events=["conversation.started", "lead.captured"],
        email=True,
        email_mode="digest",
        digest_interval_min=15,
    )
    for n in range(3):
        visitor = await start_visitor(client, site.id)
        await visitor.conversation()
        lead = await client.post(
            "/api/widget/v1/leads", headers=visitor.auth, json={"email": f"v{n}@buyer.example"}
        )
        assert lead.status_code == 201, lead.text
    await settle(services)
    async with services.db.read_scope() as session:
        waiting = await session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.email_state == "digest")
        )
    assert waiting == 6
    assert mail.messages == []
    async with services.db.read_scope() as session:
        digests = await session.scalar(
            select(func.count()).select_from(Job).where(Job.kind == "notification.digest")
        )
    assert digests == 1  # one digest job for six notifications

    mail.refuse = 1  # the SMTP server says "try later" once
    clock.advance(16 * 60)
    await settle(services)
    assert mail.refused == 1 and mail.messages == []
    clock.advance(120)  # past the retry's backoff
    await settle(services)
    await wait_for_mail(mail, 1)
    digest = mail.messages[0]
    assert digest["Subject"] == "[FrontDesk] 6 notifications"
    text = digest.get_body(("plain",))
    assert text is not None
    content = text.get_content()
    assert "conversation.started (3)" in content and "lead.captured (3)" in content
    assert "v2@buyer.example" in content

    # The next event starts the next digest; nothing is sent twice.
    visitor = await start_visitor(client, site.id)
    await visitor.conversation()
    await settle(services)
    clock.advance(16 * 60)
    await settle(services)
    await wait_for_mail(mail, 2)
    assert mail.messages[1]["Subject"] == "[FrontDesk] 1 notification"
    async with services.db.read_scope() as session:
        states = (await session.execute(select(Notification.email_state))).scalars().all()
    assert sorted(set(states)) == ["sent"] and len(states) == 7


async def test_own_actions_and_unwanted_events_do_not_notify(
    dashboard: httpx.AsyncClient,
    client: httpx.AsyncClient,
    services: Services,
    site: SiteInfo,
) -> None:
    await sign_in(dashboard, services, "own@shop.example", "operator")
    await set_preferences(dashboard, events=["message.created"], site_ids=["site_other"])
    visitor = await start_visitor(client, site.id)
    conversation = await visitor.conversation()
    await visitor.send(conversation, "hello")
    await settle(services)
    assert (await dashboard.get(f"{API}/notifications")).json()["items"] == []

    await answered(visitor, conversation)  # the bot's answer, too, is for another site
    await settle(services)
    assert (await dashboard.get(f"{API}/notifications")).json()["items"] == []
    await set_preferences(dashboard, events=["message.created"])
    takeover = await dashboard.post(f"{API}/conversations/{conversation}/takeover")
    assert takeover.status_code == 200, takeover.text
    reply = await dashboard.post(
        f"{API}/conversations/{conversation}/messages",
        json={"text": "Hi, I am here", "client_id": "5b0a4c4e-8d0b-4f55-9d43-3c2f1f0e9a11"},
    )
    assert reply.status_code == 201, reply.text
    await settle(services)
    await visitor.send(conversation, "thanks")  # taken over: the bot stays quiet
    await settle(services)
    items = (await dashboard.get(f"{API}/notifications")).json()["items"]
    assert [i["title"] for i in items] == ["New visitor message"]  # not my own reply


async def test_activity_retention_prunes_only_what_is_old_and_handled(
    services: Services, client: httpx.AsyncClient, site: SiteInfo
) -> None:
    visitor = await start_visitor(client, site.id)
    await visitor.conversation()
    await settle(services)
    async with services.db.session_scope() as session:
        total = await session.scalar(select(func.count()).select_from(EventRecord))
        head = await session.scalar(select(func.max(EventRecord.offset)))
        assert total and head
        old = services.worker.clock.now() - timedelta(days=400)
        # Age every event but the newest; hold the notification cursor back by one.
        await session.execute(update(EventRecord).where(EventRecord.offset < head).values(at=old))
        await session.execute(
            update(SystemMeta)
            .where(SystemMeta.key == "notification_cursor")
            .values(value=str(head - 2))
        )
    retention = ActivityRetention(services.db, services.worker.clock, days=180)
    deleted = await retention()
    assert deleted == total - 2  # the aged ones up to the notification cursor (head - 2)
    async with services.db.read_scope() as session:
        left = (await session.execute(select(EventRecord.offset))).scalars().all()
    assert sorted(left) == [head - 1, head]  # not yet notified, and the recent one
    assert await retention() == 0  # at most once per hour
    assert await ActivityRetention(services.db, services.worker.clock, days=0)() == 0


async def test_a_disabled_webhook_endpoint_notifies_by_default(
    dashboard: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    await sign_in(dashboard, services, "admin@shop.example", "admin")
    async with services.db.session_scope() as session:
        record_event(
            session,
            "webhook.endpoint_disabled",
            site_id=site.id,
            data={"endpoint_id": "whe_1", "reason": "failing for 5 days"},
        )
    await settle(services)
    items = (await dashboard.get(f"{API}/notifications")).json()["items"]
    assert [i["title"] for i in items] == ["A webhook endpoint was disabled"]
    assert items[0]["link"] == f"{PUBLIC_URL}/dashboard/admin/webhooks"
    assert "failing for 5 days" in items[0]["body"]

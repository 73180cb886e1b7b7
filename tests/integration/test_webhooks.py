"""Outbound webhooks end to end: fan-out from events, Standard Webhooks signatures (verified with
the official library, also during rotation), the retry schedule on a controllable clock, 410,
Retry-After, large payloads, the delivery log, redelivery, and the SSRF guard."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.config import Settings
from frontdesk.main import create_app
from frontdesk.services import Services
from frontdesk.webhooks.deliver import SCHEDULE_S
from frontdesk.webhooks.signing import verify
from tests.conftest import ORIGIN, PUBLIC_URL, make_site, start_visitor
from tests.fakes import FakeServer
from tests.fakes.receiver import WebhookReceiver

API = "/api/v1"


@pytest.fixture
async def hooks_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with the worker driven by the test (no background loop) and loopback allowed."""
    quiet = settings.model_copy(update={"run_worker": False, "webhook_allowed_hosts": "127.0.0.1"})
    application = create_app(quiet)
    async with application.router.lifespan_context(application):
        application.state.services.worker.clock.freeze()
        yield application


@pytest.fixture
def hooks(hooks_app: FastAPI) -> Services:
    services: Services = hooks_app.state.services
    return services


@pytest.fixture
async def http(hooks_app: FastAPI, hooks: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with hooks.db.session_scope() as session:
        key = (await do_create_api_key(session, scopes=["admin", "read"])).key
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooks_app),
        base_url=PUBLIC_URL,
        headers={"Origin": ORIGIN, "Authorization": f"Bearer {key}"},
    ) as client:
        yield client


async def drain(services: Services, rounds: int = 20) -> None:
    for _ in range(rounds):
        if not await services.worker.run_once():
            return


async def new_endpoint(
    http: httpx.AsyncClient, url: str, events: list[str], site_id: str | None = None
) -> dict:  # type: ignore[type-arg]
    response = await http.post(
        f"{API}/webhooks", json={"url": url, "events": events, "site_id": site_id}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def lead_event(http: httpx.AsyncClient, services: Services, site_id: str, email: str) -> None:
    visitor = await start_visitor(http, site_id)
    response = await http.post("/api/widget/v1/leads", headers=visitor.auth, json={"email": email})
    assert response.status_code == 201, response.text


async def test_signed_deliveries_verify_with_the_official_library(
    http: httpx.AsyncClient, hooks: Services
) -> None:
    receiver = WebhookReceiver()
    site = await make_site(hooks)
    async with FakeServer(receiver) as url:
        endpoint = await new_endpoint(http, f"{url}/hook", ["lead.captured"], site.id)
        assert endpoint["secret"].startswith("whsec_")
        await lead_event(http, hooks, site.id, "a@shop.example")
        await drain(hooks)
        assert len(receiver.received) == 1
        got = receiver.received[0]
        payload = Webhook(endpoint["secret"]).verify(got.body, got.headers)
        assert (
            payload["type"] == "lead.captured"
            and payload["data"]["contact"]["email"] == "a@shop.example"
        )
        assert got.headers["webhook-id"].startswith("msg_")

        rotated = (await http.post(f"{API}/webhooks/{endpoint['id']}/secret")).json()["secret"]
        await lead_event(http, hooks, site.id, "b@shop.example")
        await drain(hooks)
        got = receiver.received[1]
        assert len(got.headers["webhook-signature"].split()) == 2  # both secrets sign
        Webhook(endpoint["secret"]).verify(got.body, got.headers)
        Webhook(rotated).verify(got.body, got.headers)
        hooks.worker.clock.advance(25 * 3600)  # the overlap ends
        await lead_event(http, hooks, site.id, "c@shop.example")
        await drain(hooks)
        got = receiver.received[2]
        # (the test's clock is a day ahead of the library's, so check with the same algorithm)
        msg_id, stamp = got.headers["webhook-id"], int(got.headers["webhook-timestamp"])
        signature = got.headers["webhook-signature"]
        assert len(signature.split()) == 1
        assert verify(rotated, msg_id, stamp, got.body, signature, now=stamp)
        assert not verify(endpoint["secret"], msg_id, stamp, got.body, signature, now=stamp)


async def test_receiver_down_for_an_hour_loses_nothing(
    http: httpx.AsyncClient, hooks: Services
) -> None:
    clock = hooks.worker.clock
    started = clock.now()
    receiver = WebhookReceiver(
        answer=lambda _: (500, {}) if clock.now() - started < timedelta(hours=1) else (200, {})
    )
    site = await make_site(hooks)
    async with FakeServer(receiver) as url:
        endpoint = await new_endpoint(http, f"{url}/crm", ["lead.captured"], site.id)
        for i in range(5):
            await lead_event(http, hooks, site.id, f"lead{i}@shop.example")
        await drain(hooks)
        elapsed = 0.0
        for delay in SCHEDULE_S[:4]:  # 5 s, 5 min, 30 min, 2 h (with jitter)
            step = delay * 1.11
            clock.advance(step)
            elapsed += step
            await drain(hooks)
        ids = {r.headers["webhook-id"] for r in receiver.received}
        delivered = [
            json.loads(r.body)["data"]["contact"]["email"]
            for r in receiver.received
            if r.status == 200
        ]
        assert len(ids) == 5  # five deliveries, each retried under its own id
        log = (await http.get(f"{API}/webhooks/{endpoint['id']}/deliveries")).json()["deliveries"]
        assert {d["status"] for d in log} == {"succeeded"}
        for delivery in log:
            codes = [a["status_code"] for a in delivery["attempt_log"]]
            assert codes[-1] == 200 and set(codes[:-1]) == {500} and len(codes) == 5
        assert sorted(delivered) == [f"lead{i}@shop.example" for i in range(5)]  # once each


async def test_gone_disables_and_retry_after_is_honoured(
    http: httpx.AsyncClient, hooks: Services
) -> None:
    site = await make_site(hooks)
    gone = WebhookReceiver(answer=lambda _: (410, {}))
    busy = WebhookReceiver(answer=lambda n: (429, {"Retry-After": "3600"}) if n == 1 else (200, {}))
    async with FakeServer(gone) as gone_url, FakeServer(busy) as busy_url:
        gone_endpoint = await new_endpoint(http, gone_url, ["lead.captured"], site.id)
        busy_endpoint = await new_endpoint(http, busy_url, ["lead.captured"], site.id)
        await lead_event(http, hooks, site.id, "x@shop.example")
        await drain(hooks)
        listed = {e["id"]: e for e in (await http.get(f"{API}/webhooks")).json()["webhooks"]}
        assert listed[gone_endpoint["id"]]["status"] == "disabled"
        assert listed[gone_endpoint["id"]]["disabled_reason"] == "410 Gone"
        log = (await http.get(f"{API}/webhooks/{busy_endpoint['id']}/deliveries")).json()[
            "deliveries"
        ]
        waits = log[0]
        assert waits["status"] == "pending"
        hooks.worker.clock.advance(600)  # the schedule says 5 s; Retry-After says an hour
        await drain(hooks)
        assert len(busy.received) == 1
        hooks.worker.clock.advance(3600)
        await drain(hooks)
        assert len(busy.received) == 2


async def test_large_payloads_are_sent_as_a_reference(
    http: httpx.AsyncClient, hooks: Services
) -> None:
    site = await make_site(hooks)
    receiver = WebhookReceiver()
    async with FakeServer(receiver) as url:
        await new_endpoint(http, url, ["widget.event"], site.id)
        visitor = await start_visitor(http, site.id)
        big = {"events": [{"type": "custom.big", "data": {"blob": "x" * 30_000}}]}
        assert (
            await http.post("/api/widget/v1/events", headers=visitor.auth, json=big)
        ).status_code == 202
        await drain(hooks)
    body = json.loads(receiver.received[0].body)
    assert body["data"] is None and body["data_url"].endswith(body["id"])
    fetched = await http.get(body["data_url"].removeprefix(PUBLIC_URL))
    assert fetched.json()["data"]["data"]["blob"] == "x" * 30_000


async def test_redeliver_and_test_send(http: httpx.AsyncClient, hooks: Services) -> None:
    site = await make_site(hooks)
    started = hooks.worker.clock.now()
    receiver = WebhookReceiver(answer=lambda n: (500, {}) if n <= 10 else (200, {}))
    async with FakeServer(receiver) as url:
        endpoint = await new_endpoint(http, url, ["*"], site.id)
        await lead_event(http, hooks, site.id, "r@shop.example")
        await drain(hooks)
        for delay in SCHEDULE_S:
            hooks.worker.clock.advance(delay * 1.11)
            await drain(hooks)
        log = (
            await http.get(f"{API}/webhooks/{endpoint['id']}/deliveries", params={"status": "dead"})
        ).json()["deliveries"]
        assert log and all(d["attempts"] == 10 for d in log)
        since = (started - timedelta(minutes=1)).isoformat()
        again = await http.post(f"{API}/webhooks/{endpoint['id']}/redeliver", json={"since": since})
        assert again.json()["redelivered"] == len(log)
        await drain(hooks)
        first_id = log[0]["id"]
        assert any(r.headers["webhook-id"] == first_id for r in receiver.received[-len(log) :])
        one = await http.post(f"{API}/webhooks/{endpoint['id']}/deliveries/{first_id}/redeliver")
        assert one.status_code == 202
        test = await http.post(f"{API}/webhooks/{endpoint['id']}/test")
        assert test.status_code == 202
        await drain(hooks)
        assert json.loads(receiver.received[-1].body)["type"] in ("webhook.test", "lead.captured")


async def test_ssrf_guard(http: httpx.AsyncClient, hooks: Services) -> None:
    from frontdesk.webhooks.ssrf import Allowlist, BlockedDestination, guarded_client

    client = guarded_client(Allowlist(""), timeout_s=2)
    for url in (
        "http://127.0.0.1:9/",  # IP addresses never reach the resolver: the socket check stops them
        "http://10.1.2.3/",
        "http://169.254.169.254/latest",
        "http://localhost:9/",  # a name: the resolver's check stops it
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://0.0.0.0:9/",
    ):
        with pytest.raises(BlockedDestination):
            async with client.post(url, content=b"{}"):
                pass
    await client.aclose()
    receiver = WebhookReceiver()
    async with FakeServer(receiver) as url:
        port = url.rsplit(":", 1)[1]
        for spec, target in (
            ("127.0.0.0/8", url),  # a private network allowed by address
            ("localhost", f"http://localhost:{port}/"),  # ... or a private host by name
        ):
            allowed = guarded_client(Allowlist(spec), timeout_s=2)
            async with allowed.post(target, content=b"{}") as response:
                assert response.status == 200
            await allowed.aclose()
        # Allowing a name does not allow its addresses under another name or as an IP.
        by_name = guarded_client(Allowlist("localhost"), timeout_s=2)
        with pytest.raises(BlockedDestination):
            async with by_name.post(f"http://127.0.0.2:{port}/", content=b"{}"):
                pass
        await by_name.aclose()
    assert len(receiver.received) == 2

    site = await make_site(hooks)
    endpoint = await new_endpoint(http, "http://10.0.0.5/hook", ["lead.captured"], site.id)
    await lead_event(http, hooks, site.id, "s@shop.example")
    await drain(hooks)
    log = (await http.get(f"{API}/webhooks/{endpoint['id']}/deliveries")).json()["deliveries"]
    assert log[0]["status"] == "dead" and log[0]["attempt_log"][0]["error"].startswith("blocked")


async def test_redirects_are_not_followed_and_responses_are_cut(
    http: httpx.AsyncClient, hooks: Services
) -> None:
    target = WebhookReceiver()

    async def wordy(scope: dict, receive: Any, send: Any) -> None:  # type: ignore[type-arg]
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"y" * 5000})

    site = await make_site(hooks)
    async with FakeServer(target) as target_url, FakeServer(wordy) as wordy_url:
        moved = WebhookReceiver(answer=lambda _: (302, {"Location": target_url}))
        async with FakeServer(moved) as moved_url:
            redirected = await new_endpoint(http, moved_url, ["lead.captured"], site.id)
            chatty = await new_endpoint(http, wordy_url, ["lead.captured"], site.id)
            await lead_event(http, hooks, site.id, "m@shop.example")
            await drain(hooks)
        assert len(moved.received) == 1 and not target.received  # the 302 is a failure
    log = (await http.get(f"{API}/webhooks/{redirected['id']}/deliveries")).json()["deliveries"]
    assert log[0]["status"] == "pending" and log[0]["attempt_log"][0]["status_code"] == 302
    log = (await http.get(f"{API}/webhooks/{chatty['id']}/deliveries")).json()["deliveries"]
    attempt = log[0]["attempt_log"][0]
    assert log[0]["status"] == "succeeded" and attempt["status_code"] == 200
    assert attempt["response"] == "y" * 1024 and attempt["duration_ms"] >= 0


async def test_an_endpoint_that_fails_oddly_does_not_sink_its_batch(
    http: httpx.AsyncClient, hooks: Services
) -> None:
    """Deliveries go out in batches: one endpoint whose secret cannot be opened logs a failed
    attempt and is retried on schedule, while the rest of the batch is delivered."""
    from sqlalchemy import update

    from frontdesk.models import WebhookEndpoint

    site = await make_site(hooks)
    good, bad = WebhookReceiver(), WebhookReceiver()
    async with FakeServer(good) as good_url, FakeServer(bad) as bad_url:
        fine = await new_endpoint(http, good_url, ["lead.captured"], site.id)
        broken = await new_endpoint(http, bad_url, ["lead.captured"], site.id)
        async with hooks.db.session_scope() as session:
            await session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == broken["id"])
                .values(secret_sealed="not a sealed secret")
            )
        await lead_event(http, hooks, site.id, "b@shop.example")
        await drain(hooks)
    assert len(good.received) == 1 and not bad.received
    log = (await http.get(f"{API}/webhooks/{fine['id']}/deliveries")).json()["deliveries"]
    assert log[0]["status"] == "succeeded"
    log = (await http.get(f"{API}/webhooks/{broken['id']}/deliveries")).json()["deliveries"]
    attempt = log[0]["attempt_log"][0]
    assert log[0]["status"] == "pending" and log[0]["next_attempt_at"]  # retried on schedule
    assert attempt["status_code"] is None and attempt["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://x.example", "events": ["*"]},
        {"url": "https://user:pw@x.example", "events": ["*"]},
        {"url": "https://x.example", "events": ["no.such_event"]},
        {"url": "https://x.example", "events": []},
        {"url": "https://x.example", "events": ["*"], "extra": 1},
    ],
)
async def test_endpoint_validation(http: httpx.AsyncClient, body: dict) -> None:  # type: ignore[type-arg]
    response = await http.post(f"{API}/webhooks", json=body)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


async def test_activity_feed(http: httpx.AsyncClient, hooks: Services) -> None:
    site = await make_site(hooks)
    await lead_event(http, hooks, site.id, "feed@shop.example")
    page = (await http.get(f"{API}/activity", params={"type": "lead.*", "site_id": site.id})).json()
    assert [a["type"] for a in page["activity"]] == ["lead.captured"]
    assert page["activity"][0]["actor"].startswith("vis_")
    everything = (await http.get(f"{API}/activity", params={"limit": 2})).json()
    assert len(everything["activity"]) == 2 and everything["next_cursor"]
    more = (
        await http.get(f"{API}/activity", params={"limit": 2, "cursor": everything["next_cursor"]})
    ).json()
    assert more["activity"][0]["offset"] < everything["activity"][-1]["offset"]

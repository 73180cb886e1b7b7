"""`/ws/events`: authorisation, subscribe with filters, live events, bounded recovery."""

from __future__ import annotations

import httpx

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.services import Services
from tests.conftest import SiteInfo, Visitor, make_site, start_visitor
from tests.realtime.wsclient import Socket, open_socket


async def api_key(services: Services, scopes: list[str], site_id: str | None = None) -> str:
    async with services.db.session_scope() as session:
        return (await do_create_api_key(session, scopes=scopes, site_id=site_id)).key


async def events_socket(server: str, key: str) -> Socket:
    socket = await open_socket(server, "/ws/events", origin=None)
    await socket.send({"type": "auth", "api_key": key})
    assert (await socket.recv())["type"] == "ready"
    return socket


async def test_live_events_with_type_filter(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    socket = await events_socket(live_server, await api_key(services, ["events"]))
    await socket.send({"type": "subscribe", "types": ["message.*"]})
    subscribed = await socket.recv()
    assert subscribed["type"] == "subscribed" and subscribed["recovered"] is True
    assert subscribed["events"] == [] and isinstance(subscribed["epoch"], str)
    conversation_id = await visitor.conversation()  # conversation.started: filtered out
    await visitor.send(conversation_id, "hello")
    frame = await socket.recv()
    assert frame["type"] == "event" and frame["offset"] > subscribed["offset"]
    event = frame["event"]
    assert set(event) == {"id", "type", "at", "site_id", "data"}
    assert event["type"] == "message.created" and event["data"]["message"]["text"] == "hello"
    await socket.close()


async def test_recovery_replays_everything_missed(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    key = await api_key(services, ["events"])
    socket = await events_socket(live_server, key)
    await socket.send({"type": "subscribe", "types": ["*"]})
    first = await socket.recv()
    await socket.close()
    conversation_id = await visitor.conversation()
    await visitor.send(conversation_id, "while away")
    await services.turns.drain()

    again = await events_socket(live_server, key)
    since = {"epoch": first["epoch"], "offset": first["offset"]}
    await again.send({"type": "subscribe", "types": ["*"], "since": since})
    resumed = await again.recv()
    assert resumed["recovered"] is True
    types = [e["type"] for e in resumed["events"]]
    assert types == ["conversation.started", "message.created", "message.created"]
    offsets = [e["offset"] for e in resumed["events"]]
    assert offsets == sorted(offsets) and offsets[0] > first["offset"]
    assert resumed["offset"] == offsets[-1]

    await again.send({"type": "subscribe", "since": {"epoch": "other-epoch", "offset": 1}})
    foreign = await again.recv()
    assert foreign["recovered"] is False and foreign["events"] == []
    await again.close()


async def test_outside_the_window_is_not_recovered(
    live_server: str, services: Services, visitor: Visitor
) -> None:
    key = await api_key(services, ["events"])
    socket = await events_socket(live_server, key)
    await socket.send({"type": "subscribe"})
    first = await socket.recv()
    services.settings.events_window_size = 2
    conversation_id = await visitor.conversation()
    await visitor.send(conversation_id, "one")
    await services.turns.drain()
    await socket.send(
        {"type": "subscribe", "since": {"epoch": first["epoch"], "offset": first["offset"]}}
    )
    frames = await socket.recv_until(lambda f: f["type"] == "subscribed")
    assert frames[-1]["recovered"] is False and frames[-1]["events"] == []  # never partial
    await socket.close()


async def test_site_limited_key_sees_its_site_only(
    live_server: str,
    client: httpx.AsyncClient,
    services: Services,
    site: SiteInfo,
    visitor: Visitor,
) -> None:
    other = await make_site(services, name="Other")
    socket = await events_socket(live_server, await api_key(services, ["events"], site_id=other.id))
    await socket.send({"type": "subscribe"})
    await socket.recv()
    await visitor.conversation()  # on `site`: not visible
    outsider = await start_visitor(client, other.id)
    await outsider.conversation()
    frame = await socket.recv()
    assert frame["event"]["site_id"] == other.id
    await socket.close()


async def test_authorisation(live_server: str, services: Services, site: SiteInfo) -> None:
    no_events = await api_key(services, ["read"])
    socket = await open_socket(live_server, "/ws/events", origin=None)
    await socket.send({"type": "auth", "api_key": no_events})
    assert await socket.closed_with() == 4403  # authenticated, but not allowed
    bad = await open_socket(live_server, "/ws/events", origin=None)
    await bad.send({"type": "auth", "api_key": "fd_nope"})
    assert await bad.closed_with() == 4401
    foreign = await open_socket(live_server, "/ws/events", origin="https://evil.example")
    assert await foreign.closed_with() == 4403
    services.settings.ws_auth_timeout_s = 0.3
    silent = await open_socket(live_server, "/ws/events", origin=None)
    assert await silent.closed_with() == 4408
    cookie = await open_socket(
        live_server,
        "/ws/events",
        origin="https://evil.example",
        additional_headers={"Cookie": "__Host-fd_session=whatever"},
    )
    assert await cookie.closed_with() == 4403  # cross-site WebSocket hijacking refused

"""The inbox list's text search (`q`) and the last message shown with each conversation."""

from __future__ import annotations

import httpx

from frontdesk.actions.apikeys import do_create_api_key
from frontdesk.services import Services
from tests.conftest import SiteInfo, make_site, start_visitor

API = "/api/v1/conversations"


async def reader(services: Services) -> dict[str, str]:
    async with services.db.session_scope() as session:
        created = await do_create_api_key(session, scopes=["read"])
    return {"Authorization": f"Bearer {created.key}"}


async def test_search_by_text_and_ids(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    other = await make_site(services, name="Other")
    headers = await reader(services)
    texts = {
        "refund": "Can I get a REFUND for order 100%_off?",
        "hours": "When do you open on Sunday?",
        "other": "refund please",
    }
    ids: dict[str, str] = {}
    visitors: dict[str, str] = {}
    for name, text in texts.items():
        visitor = await start_visitor(client, other.id if name == "other" else site.id)
        ids[name] = await visitor.conversation()
        visitors[name] = visitor.id
        assert (await visitor.send(ids[name], text)).status_code == 202
    await services.turns.drain()

    async def found(**params: str) -> list[str]:
        response = await client.get(API, headers=headers, params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["conversations"]]

    assert sorted(await found(q="refund")) == sorted([ids["refund"], ids["other"]])
    assert await found(q="Refund", site_id=site.id) == [ids["refund"]]
    assert await found(q="100%_off") == [ids["refund"]]  # LIKE wildcards are literal
    assert await found(q="%") == [ids["refund"]]
    assert await found(q="d_y") == []  # would match "Sunday" if "_" were a wildcard
    assert await found(q=ids["hours"]) == [ids["hours"]]
    assert await found(q=visitors["hours"]) == [ids["hours"]]
    assert await found(q="nothing like this") == []
    empty = await client.get(API, headers=headers, params={"q": ""})
    assert empty.status_code == 422
    assert empty.json()["error"]["code"] == "invalid_request"


async def test_list_carries_the_last_message(
    client: httpx.AsyncClient, services: Services, site: SiteInfo
) -> None:
    headers = await reader(services)
    visitor = await start_visitor(client, site.id)
    quiet = await visitor.conversation()
    talking = await visitor.conversation()
    await visitor.send(talking, "first question " + "x" * 300)
    await services.turns.drain()
    page = (await client.get(API, headers=headers)).json()["conversations"]
    by_id = {c["id"]: c for c in page}
    assert by_id[quiet]["last_message"] is None
    last = by_id[talking]["last_message"]
    assert last["seq"] == by_id[talking]["last_seq"] == 2
    assert last["role"] == "assistant" and 0 < len(last["text"]) <= 200
    await visitor.send(talking, "second " + "y" * 300)
    await services.turns.drain()
    page = (await client.get(API, headers=headers)).json()["conversations"]
    last = {c["id"]: c for c in page}[talking]["last_message"]
    assert last["seq"] == 4
    detail = (await client.get(f"{API}/{talking}", headers=headers)).json()
    assert detail["messages"][-1]["text"].startswith(last["text"])

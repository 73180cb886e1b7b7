"""Security headers on every route, the frame page's CSP, and CORS that names only allowed
origins."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from frontdesk.services import Services
from tests.conftest import ORIGIN, SiteInfo, make_site

PAGES = [
    ("GET", "/"),
    ("GET", "/demo"),
    ("GET", "/demo/{name}"),
    ("GET", "/dashboard"),
    ("GET", "/w/{site_id}"),
    ("GET", "/docs"),
    ("GET", "/api/v1/openapi.json"),
]


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """Every documented operation plus the pages kept out of the schema."""
    routes = list(PAGES)
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            routes.append((method.upper(), path))
    return routes


async def test_every_route_sends_security_headers(
    app: FastAPI, client: httpx.AsyncClient, site: SiteInfo
) -> None:
    table = route_table(app)
    assert len(table) > 20
    for method, path in table:
        url = path.replace("{site_id}", site.id)
        for name in ("conversation_id", "key_id", "operator_id", "document_id", "name"):
            url = url.replace("{" + name + "}", "x")
        response = await client.request(method, url)
        assert response.status_code < 500, (method, url, response.text)
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", url
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin", url
        assert "camera=()" in headers["permissions-policy"], url
        csp = headers["content-security-policy"]
        assert "object-src 'none'" in csp and "base-uri 'none'" in csp, url
        if not url.startswith("/w/"):
            assert "frame-ancestors 'none'" in csp, url
        assert "x-frame-options" not in headers or not url.startswith("/w/")


async def test_frame_page_csp_lists_exactly_the_site_origins(
    client: httpx.AsyncClient, services: Services
) -> None:
    site = await make_site(services, origins=["https://shop.example", "https://*.shop.example"])
    response = await client.get(f"/w/{site.id}")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    directive = next(d.strip() for d in csp.split(";") if "frame-ancestors" in d)
    assert directive.split()[1:] == ["https://shop.example", "https://*.shop.example"]
    assert "x-frame-options" not in response.headers
    assert f'data-site-id="{site.id}"' in response.text
    missing = await client.get("/w/site_nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "site_not_found"


async def test_hsts_only_under_https(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from frontdesk.config import load_settings
    from frontdesk.main import create_app

    app = create_app(load_settings(data_dir=tmp_path, public_url="https://chat.example"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://chat.example"
    ) as http:
        response = await http.get("/health")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_cors_preflight_and_responses(client: httpx.AsyncClient, site: SiteInfo) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = await client.options("/api/widget/v1/sessions", headers={**preflight, "Origin": ORIGIN})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-credentials" not in ok.headers
    evil = await client.options(
        "/api/widget/v1/sessions", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    assert "access-control-allow-origin" not in evil.headers
    response = await client.post("/api/widget/v1/sessions", json={"site_id": site.id})
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["vary"] == "Origin"
    refused = await client.post(
        "/api/widget/v1/sessions",
        json={"site_id": site.id},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    for response in (ok, evil, refused):
        assert response.headers.get("access-control-allow-origin") != "*"


@pytest.mark.parametrize("origin", ["null", "https://shop.example.evil", "http://shop.example"])
async def test_lookalike_origins_refused(
    client: httpx.AsyncClient, site: SiteInfo, origin: str
) -> None:
    response = await client.post(
        "/api/widget/v1/sessions", json={"site_id": site.id}, headers={"Origin": origin}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"


async def test_native_clients_need_the_site_option(
    client: httpx.AsyncClient, services: Services
) -> None:
    native = await make_site(services, options={"allow_native_clients": True})
    del client.headers["Origin"]
    response = await client.post("/api/widget/v1/sessions", json={"site_id": native.id})
    assert response.status_code == 201

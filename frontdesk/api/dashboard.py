"""The operator dashboard: `/dashboard`, its client-side routes and `/dashboard/assets/*`.

The dashboard is a single-page app (web/dashboard, Svelte, built by Vite into
`frontdesk/web/static/dashboard`). Its routes are paths under `/dashboard/`, so every path there
that is not an asset gets `index.html` (the app picks the page from the URL); a missing asset is a
404, never the page. Assets have content hashes in their names and are cached for a year;
`index.html` is revalidated on every load so a new build is picked up at once.

The build refers to its assets as `/dashboard/assets/…`; behind a reverse proxy on a sub-path
(`FRONTDESK_PUBLIC_URL=https://example.com/desk`) those references are rewritten to carry the
prefix. The page gets its own Content-Security-Policy, stricter than the default one: the app
needs only its own scripts, styles and connections (see ADR 0016).
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Header
from fastapi.responses import HTMLResponse, Response

from frontdesk.api.assets import HASHED_CACHE, read_static
from frontdesk.api.deps import ServicesDep
from frontdesk.errors import not_found

router = APIRouter(include_in_schema=False)

DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ASSET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}\.(js|css|svg|woff2)$")
TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "woff2": "font/woff2",
}
NOT_BUILT = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>FrontDesk dashboard</title>"
    "<h1>Dashboard</h1><p>The dashboard is not built yet: run <code>make build</code>.</p></html>"
)


def _page(services: ServicesDep) -> Response:
    headers = {"Content-Security-Policy": DASHBOARD_CSP, "Cache-Control": "no-cache"}
    built = read_static("dashboard/index.html")
    if built is None:
        return HTMLResponse(NOT_BUILT, headers=headers)
    prefix = urlsplit(services.settings.public_url).path.rstrip("/")
    body = built.body
    if prefix:
        body = body.replace(b'"/dashboard/', f'"{prefix}/dashboard/'.encode())
    return HTMLResponse(body, headers=headers)


@router.get("/dashboard/assets/{name}")
async def dashboard_asset(
    name: str,
    if_none_match: Annotated[str | None, Header(max_length=500)] = None,
) -> Response:
    match = ASSET_NAME.match(name)
    file = read_static(f"dashboard/assets/{name}") if match else None
    if match is None or file is None:
        raise not_found()
    headers = {
        "ETag": file.etag,
        "Cache-Control": HASHED_CACHE,
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if if_none_match and file.etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=TYPES[match.group(1)], headers=headers)


@router.get("/dashboard")
async def dashboard(services: ServicesDep) -> Response:
    return _page(services)


@router.get("/dashboard/{route:path}")
async def dashboard_route(route: str, services: ServicesDep) -> Response:
    """Any client-side route (`/dashboard/inbox/conv_…`) loads the app."""
    if route.startswith("assets/"):
        raise not_found()
    return _page(services)

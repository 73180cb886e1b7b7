"""HTML pages served by the app: the home page and the demo page (the dashboard is
`frontdesk.api.dashboard`).

The demo page is a plain page on FrontDesk's own origin that talks to the widget API of the demo
site (HTTP + SSE); the embeddable widget replaces it as the way to chat once it lands.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from frontdesk.api.deps import ServicesDep
from frontdesk.errors import not_found

DEMO = Path(__file__).resolve().parent.parent / "demo"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def home(services: ServicesDep) -> HTMLResponse:
    url = services.settings.public_url
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><title>FrontDesk</title>"
        "<link rel=stylesheet href=/demo/demo.css><main><h1>FrontDesk</h1><ul>"
        f'<li><a href="{url}/demo">Demo page</a></li>'
        f'<li><a href="{url}/dashboard">Dashboard</a></li>'
        f'<li><a href="{url}/docs">API docs</a></li></ul></main></html>'
    )


@router.get("/demo")
async def demo_page() -> FileResponse:
    return FileResponse(DEMO / "index.html", media_type="text/html")


@router.get("/demo/{name}")
async def demo_asset(name: str) -> FileResponse:
    types = {"demo.js": "text/javascript", "demo.css": "text/css"}
    if name not in types:
        raise not_found()
    return FileResponse(DEMO / name, media_type=types[name])

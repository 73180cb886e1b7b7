"""The chat frame page `/w/{site_id}`: what the widget's iframe loads.

Its `Content-Security-Policy: frame-ancestors` lists exactly the site's allowed origins, so no
other page can frame the chat; this is the only page that may be framed at all, and it sends no
`X-Frame-Options`. The page is a shell: the built frame bundle (web/frame, served by
`frontdesk.api.assets` under `/w/assets/`) renders the chat. Asset URLs are relative, so the page
works under a sub-path too.
"""

from __future__ import annotations

import html

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from frontdesk.api.assets import frame_assets
from frontdesk.api.deps import ServicesDep

router = APIRouter(include_in_schema=False)

FRAME_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors {ancestors}"
)
NOT_BUILT = "<p>The chat frame is not built yet: run <code>make build</code>.</p>"


def frame_ancestors(origins: tuple[str, ...]) -> str:
    return " ".join(origins) if origins else "'none'"


@router.get("/w/{site_id}")
async def chat_frame(site_id: str, services: ServicesDep) -> HTMLResponse:
    site = await services.sites.get(site_id)
    assets = frame_assets()
    head, body = "", NOT_BUILT
    if assets is not None:
        js, css = (html.escape(name) for name in assets)
        head = (
            f'  <link rel="stylesheet" href="assets/{css}">\n'
            f'  <script src="assets/{js}" defer></script>\n'
        )
        body = ""
    page = f"""<!doctype html>
<html lang="{html.escape(site.locale)}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="strict-origin-when-cross-origin">
  <title>{html.escape(site.name)}</title>
{head}</head>
<body data-site-id="{html.escape(site.id)}">{body}</body>
</html>"""
    csp = FRAME_CSP.format(ancestors=frame_ancestors(site.allowed_origins))
    return HTMLResponse(page, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})

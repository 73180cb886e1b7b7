"""The chat frame page `/w/{site_id}`: what the widget's iframe loads.

Its `Content-Security-Policy: frame-ancestors` lists exactly the site's allowed origins, so no
other page can frame the chat; this is the only page that may be framed at all, and it sends no
`X-Frame-Options`. Until the embeddable widget lands,
the frame runs the same small chat client as the demo page.
"""

from __future__ import annotations

import html

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from frontdesk.api.deps import ServicesDep

router = APIRouter(include_in_schema=False)

FRAME_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors {ancestors}"
)


def frame_ancestors(origins: tuple[str, ...]) -> str:
    return " ".join(origins) if origins else "'none'"


@router.get("/w/{site_id}")
async def chat_frame(site_id: str, services: ServicesDep) -> HTMLResponse:
    site = await services.sites.get(site_id)
    page = f"""<!doctype html>
<html lang="{html.escape(site.locale)}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{html.escape(site.name)}</title>
  <link rel="stylesheet" href="/demo/demo.css">
  <script src="/demo/demo.js" defer></script>
</head>
<body data-site-id="{html.escape(site.id)}">
  <main class="demo">
    <section class="chat" aria-label="Chat">
      <div class="status" id="status" role="status">connecting…</div>
      <ol class="messages" id="messages" aria-live="polite"></ol>
      <form id="composer" class="composer">
        <label for="text" class="visually-hidden">Your message</label>
        <input id="text" name="text" autocomplete="off" maxlength="4000" required>
        <button type="submit">Send</button>
      </form>
    </section>
  </main>
</body>
</html>"""
    csp = FRAME_CSP.format(ancestors=frame_ancestors(site.allowed_origins))
    return HTMLResponse(page, headers={"Content-Security-Policy": csp})

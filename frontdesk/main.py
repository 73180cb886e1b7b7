"""The ASGI app: `create_app(settings)` wires routers, middleware, error handlers and services.

The lifespan starts the broker and, when asked (`seed_demo`), makes sure the demo site exists;
migrations are applied by `frontdesk serve`/`frontdesk migrate`, not here, so that N processes
starting at once do not race on the schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette_compress import CompressMiddleware, remove_compress_type

from frontdesk import __version__
from frontdesk.api import assets, dashboard, frame, health, pages, realtime
from frontdesk.api import channels as inbound_channels
from frontdesk.api.cors import WidgetCors
from frontdesk.api.middleware import BodyLimit, SecurityHeaders, StrictQuery
from frontdesk.api.openapi import install_openapi
from frontdesk.api.prometheus import router as prometheus_router
from frontdesk.api.v1 import (
    activity,
    api_keys,
    audit,
    auth,
    channels,
    errors,
    knowledge,
    metrics,
    notifications,
    operators,
    sites,
    webhooks,
)
from frontdesk.api.v1 import conversations as inbox
from frontdesk.api.widget import conversations, events, offers, sessions, stream
from frontdesk.config import Settings, load_settings
from frontdesk.demo_site import ensure_demo_site
from frontdesk.errors import install_error_handlers
from frontdesk.observability.context import RequestContext
from frontdesk.observability.metrics import process_stopped
from frontdesk.observability.metrics_middleware import RequestMetrics
from frontdesk.observability.sentry import init_sentry
from frontdesk.observability.server_errors import record_server_error
from frontdesk.observability.tracing import install_tracing
from frontdesk.services import Services

# Event streams stay uncompressed: an answer streams a few bytes at a time and latency is what
# counts, and a compressor kept per open stream costs memory for nothing (ADR 0015).
remove_compress_type("text/event-stream")

DESCRIPTION = """
FrontDesk is a self-hosted AI front desk for websites.

* **Widget API** (`/api/widget/v1`): what the embedded chat calls, authenticated by a visitor
  access token (`Authorization: Bearer …`) and checked against the site's allowed origins.
* Every error is `{"error": {"code", "message"}}` with a stable `code`.
"""


def create_app(
    settings: Settings | None = None, *, after_startup: Callable[[], None] | None = None
) -> FastAPI:
    """The app; `after_startup` runs once its services have started (and the demo site exists):
    `frontdesk serve` freezes what startup built there, out of the garbage collector's way."""
    settings = settings or load_settings()
    init_sentry(settings)
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        if settings.seed_demo:
            await ensure_demo_site(services)
        if after_startup is not None:
            after_startup()
        try:
            yield
        finally:
            await services.close()
            process_stopped()

    app = realtime.FrontDeskApp(  # `/ws/chat` served ahead of the middleware stack
        title="FrontDesk",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.services = services

    async def on_server_error(request: Request, exc: Exception) -> str | None:
        return await record_server_error(services, request, exc)

    install_error_handlers(app, on_server_error)
    install_openapi(app)

    widget_prefix = "/api/widget/v1"
    app.include_router(sessions.router, prefix=widget_prefix)
    app.include_router(conversations.router, prefix=widget_prefix)
    app.include_router(events.router, prefix=widget_prefix)
    app.include_router(stream.router, prefix=widget_prefix)
    app.include_router(offers.router, prefix=widget_prefix)
    for router in (
        auth,
        sites,
        api_keys,
        operators,
        audit,
        knowledge,
        webhooks,
        activity,
        channels,
        inbox,
        metrics,
        errors,
        notifications,
    ):
        app.include_router(router.router, prefix="/api/v1")
    app.include_router(inbound_channels.router)
    app.include_router(health.router)
    app.include_router(prometheus_router)
    app.include_router(pages.router)
    app.include_router(dashboard.router)
    app.include_router(frame.router)
    app.include_router(assets.router)
    app.include_router(realtime.router)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(StrictQuery)
    app.add_middleware(WidgetCors)
    app.add_middleware(SecurityHeaders, hsts=settings.public_url.startswith("https://"))
    # Compressible bodies of 1 KB and more; event streams pass untouched (see ADR 0015).
    app.add_middleware(CompressMiddleware, minimum_size=1024)
    app.add_middleware(RequestContext)
    app.add_middleware(RequestMetrics)  # outermost: it sees every response, even refusals
    install_tracing(app, services.db)
    return app

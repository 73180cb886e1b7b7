"""Request dependencies: the app's services, the widget visitor, the origin check.

`WidgetVisitor` authenticates a widget call (bearer access token) and checks the request's
`Origin` against the token's site. The FrontDesk origin itself is always allowed, because the
chat frame `/w/{site_id}` runs on it; where that frame may be embedded is enforced by its CSP.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from frontdesk.errors import AppError, unauthorized
from frontdesk.observability import metrics
from frontdesk.queries.sites import SiteView
from frontdesk.security.client_ip import client_ip
from frontdesk.security.origins import normalise_origin, origin_allowed
from frontdesk.security.tokens import VisitorClaims
from frontdesk.services import Services


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def`
# dependency on a worker thread, a hand-off that costs more than the request's own work.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def request_ip(request: Request, services: Services) -> str | None:
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    return client_ip(peer, forwarded, services.settings.trusted_proxies)


def origin_not_allowed() -> AppError:
    return AppError("origin_not_allowed", "This origin may not use this site's widget.", 403)


def own_origin(services: Services) -> str:
    own = urlsplit(services.settings.public_url)
    return normalise_origin(f"{own.scheme}://{own.netloc}")


def request_origin(request: Request, services: Services) -> str | None:
    """The calling page's origin. Browsers omit `Origin` on same-origin GETs but always send
    `Sec-Fetch-Site`; `same-origin` there means FrontDesk's own pages (the chat frame)."""
    origin = request.headers.get("origin")
    if origin is None and request.headers.get("sec-fetch-site") == "same-origin":
        return own_origin(services)
    return origin


def check_origin(services: Services, site: SiteView, origin: str | None) -> None:
    if origin is None:
        if site.options.get("allow_native_clients"):
            return
    elif origin_allowed(origin, [own_origin(services), *site.allowed_origins]):
        return
    metrics.origin_rejected("site")
    raise origin_not_allowed()


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Send the access token as 'Authorization: Bearer <token>'.")
    return token.strip()


async def current_visitor(request: Request, services: ServicesDep) -> VisitorClaims:
    claims = services.tokens.decode(bearer_token(request))
    site = await services.sites.get(claims.site_id)
    check_origin(services, site, request_origin(request, services))
    request.state.site = site
    return claims


WidgetVisitor = Annotated[VisitorClaims, Depends(current_visitor)]


async def request_site(request: Request) -> SiteView:
    site: SiteView = request.state.site
    return site


VisitorSite = Annotated[SiteView, Depends(request_site)]

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
from frontdesk.queries.sites import SiteView
from frontdesk.security.client_ip import client_ip
from frontdesk.security.origins import normalise_origin, origin_allowed
from frontdesk.security.tokens import VisitorClaims
from frontdesk.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def request_ip(request: Request, services: Services) -> str | None:
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    return client_ip(peer, forwarded, services.settings.trusted_proxies)


def origin_not_allowed() -> AppError:
    return AppError("origin_not_allowed", "This origin may not use this site's widget.", 403)


def check_origin(services: Services, site: SiteView, origin: str | None) -> None:
    if origin is None:
        if site.options.get("allow_native_clients"):
            return
        raise origin_not_allowed()
    own = services.settings.public_url
    own_origin = normalise_origin(f"{urlsplit(own).scheme}://{urlsplit(own).netloc}")
    if origin_allowed(origin, [own_origin, *site.allowed_origins]):
        return
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
    check_origin(services, site, request.headers.get("origin"))
    request.state.site = site
    return claims


WidgetVisitor = Annotated[VisitorClaims, Depends(current_visitor)]


def request_site(request: Request) -> SiteView:
    site: SiteView = request.state.site
    return site


VisitorSite = Annotated[SiteView, Depends(request_site)]

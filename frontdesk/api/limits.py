"""Applying rate limits in routes: one call per limit, raising `rate_limited` (429)."""

from __future__ import annotations

from frontdesk.queries.sites import SiteView
from frontdesk.security.limits_policy import DEFAULTS, site_rate
from frontdesk.security.ratelimit import Rate, rate_limited
from frontdesk.services import Services


async def enforce(services: Services, scope: str, identity: str | None, rate: Rate) -> None:
    if identity is None:
        return
    decision = await services.limiter.check(scope, identity, rate)
    if not decision.allowed:
        raise rate_limited(decision)


async def enforce_message_limits(
    services: Services, site: SiteView, visitor_id: str, ip: str | None
) -> None:
    """A visitor's message: per visitor, per IP and per site (the site's settings first)."""
    limits = site.limits
    await enforce(services, "visitor", visitor_id, site_rate(limits, "visitor_messages"))
    await enforce(services, "ip", ip, site_rate(limits, "ip_messages"))
    await enforce(services, "site", site.id, site_rate(limits, "site_messages"))


async def enforce_default(services: Services, name: str, identity: str | None) -> None:
    await enforce(services, name, identity, DEFAULTS[name])

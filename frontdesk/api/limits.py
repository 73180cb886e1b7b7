"""Applying rate limits in routes: one call per limit, raising `rate_limited` (429)."""

from __future__ import annotations

from frontdesk.observability import metrics
from frontdesk.queries.sites import SiteView
from frontdesk.security.limits_policy import DEFAULTS, site_rate
from frontdesk.security.ratelimit import Rate, rate_limited
from frontdesk.services import Services


async def enforce(
    services: Services, scope: str, identity: str | None, rate: Rate, *, policy: str = ""
) -> None:
    """`scope` prefixes the bucket keys; `policy` (default: the scope) names the limit in
    metrics."""
    if identity is None:
        return
    decision = await services.limiter.check(scope, identity, rate)
    if not decision.allowed:
        metrics.rate_limited(policy or scope)
        raise rate_limited(decision)


async def enforce_message_limits(
    services: Services, site: SiteView, visitor_id: str, ip: str | None
) -> None:
    """A visitor's message: per visitor, per IP and per site (the site's settings first)."""
    limits = site.limits
    for scope, identity, policy in (
        ("visitor", visitor_id, "visitor_messages"),
        ("ip", ip, "ip_messages"),
        ("site", site.id, "site_messages"),
    ):
        await enforce(services, scope, identity, site_rate(limits, policy), policy=policy)


async def enforce_default(services: Services, name: str, identity: str | None) -> None:
    await enforce(services, name, identity, DEFAULTS[name])

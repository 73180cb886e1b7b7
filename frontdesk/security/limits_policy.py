"""Which limits apply where: the defaults, and a site's own overrides.

Limits are token buckets (`security.ratelimit`). A site may override the visitor limits in its
`limits` JSON, e.g. `{"visitor_messages": "10/minute", "visitor_burst": 20}`; everything else
is process-wide.
"""

from __future__ import annotations

from typing import Any

from frontdesk.security.ratelimit import Rate, parse_rate

DEFAULTS: dict[str, Rate] = {
    "visitor_messages": parse_rate("10/minute", burst=20),
    "site_messages": parse_rate("600/minute", burst=600),
    "ip_messages": parse_rate("60/minute", burst=60),
    "ip_sessions": parse_rate("30/minute", burst=30),
    "visitor_events": parse_rate("60/minute", burst=60),
    "login_account": parse_rate("5/minute", burst=10),
    "login_ip": parse_rate("20/minute", burst=20),
    "api_key": parse_rate("1200/minute", burst=600),
}
SITE_KEYS = {
    "visitor_messages": "visitor_burst",
    "site_messages": "site_burst",
    "ip_messages": "ip_burst",
}


def check_site_limits(limits: dict[str, Any]) -> dict[str, Any]:
    """Validate a site's `limits` JSON; raises ValueError with a readable message."""
    allowed = set(SITE_KEYS) | set(SITE_KEYS.values())
    unknown = set(limits) - allowed
    if unknown:
        raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}.")
    for rate_key, burst_key in SITE_KEYS.items():
        if rate_key in limits or burst_key in limits:
            site_rate(limits, rate_key)
    return limits


def site_rate(limits: dict[str, Any], name: str) -> Rate:
    default = DEFAULTS[name]
    text = limits.get(name)
    burst = limits.get(SITE_KEYS[name])
    if text is None and burst is None:
        return default
    if burst is not None and (not isinstance(burst, int) or isinstance(burst, bool)):
        raise ValueError(f"{SITE_KEYS[name]} must be a whole number.")
    if text is None:
        return Rate(per_s=default.per_s, burst=burst or default.burst)
    if not isinstance(text, str):
        raise ValueError(f"{name} must look like '10/minute'.")
    return parse_rate(text, burst=burst)

"""Origin allowlists: normalising origins and matching them against a site's list.

An origin is `scheme://host[:port]` with a lowercase, IDNA-encoded host and no default port.
Entries may be exact origins or `scheme://*.example.com` wildcards; a wildcard matches any
subdomain, never the bare domain itself (list it separately when wanted).
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginError(ValueError):
    pass


def normalise_origin(value: str, *, allow_wildcard: bool = False) -> str:
    value = value.strip()
    if not value:
        raise OriginError("An origin cannot be empty.")
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OriginError(f"{value!r} is not an http(s) origin.")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise OriginError(f"{value!r} must be scheme://host[:port] only.")
    host = parts.hostname or ""
    if not host:
        raise OriginError(f"{value!r} has no host.")
    wildcard = host.startswith("*.")
    if wildcard:
        if not allow_wildcard:
            raise OriginError(f"{value!r}: wildcards are not allowed here.")
        host = host[2:]
    if "*" in host:
        raise OriginError(f"{value!r}: only a leading '*.' wildcard is supported.")
    try:
        host = host.encode("idna").decode("ascii").lower() if not _is_ip(host) else host.lower()
    except UnicodeError as exc:
        raise OriginError(f"{value!r} has an invalid host name.") from exc
    try:
        port = parts.port
    except ValueError as exc:
        raise OriginError(f"{value!r} has an invalid port.") from exc
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{'*.' if wildcard else ''}{netloc}"


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def origin_allowed(origin: str | None, allowlist: list[str]) -> bool:
    if not origin:
        return False
    try:
        candidate = normalise_origin(origin)
    except OriginError:
        return False
    scheme, _, netloc = candidate.partition("://")
    for entry in allowlist:
        if entry == candidate:
            return True
        entry_scheme, _, entry_netloc = entry.partition("://")
        if entry_netloc.startswith("*.") and entry_scheme == scheme:
            suffix = entry_netloc[1:]  # ".example.com[:port]"
            if netloc.endswith(suffix) and len(netloc) > len(suffix):
                return True
    return False

"""Who is calling the REST API, and what they may do.

A principal is an operator (signed in with a cookie) or an API key. Roles and scopes both map to
permissions: `read`, `write` (conversations: reply, take over, close), `admin` (sites, knowledge,
keys, webhooks), `owner` (operators and roles), `events` (the live event stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": frozenset({"read", "write", "admin", "owner", "events"}),
    "admin": frozenset({"read", "write", "admin", "events"}),
    "operator": frozenset({"read", "write", "events"}),
    "viewer": frozenset({"read", "events"}),
}
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
    "events": frozenset({"events"}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["operator", "api_key"]
    id: str
    permissions: frozenset[str]
    site_id: str | None = None  # an API key limited to one site
    role: str | None = None
    ip: str | None = None

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def may_see_site(self, site_id: str | None) -> bool:
        return self.site_id is None or self.site_id == site_id


def operator_principal(operator_id: str, role: str, ip: str | None) -> Principal:
    return Principal(
        "operator", operator_id, ROLE_PERMISSIONS.get(role, frozenset()), None, role, ip
    )


def api_key_principal(
    key_id: str, scopes: list[str], site_id: str | None, ip: str | None
) -> Principal:
    permissions: frozenset[str] = frozenset()
    for scope in scopes:
        permissions |= SCOPE_PERMISSIONS.get(scope, frozenset())
    return Principal("api_key", key_id, permissions, site_id, None, ip)

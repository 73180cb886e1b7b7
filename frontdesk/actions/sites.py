"""Creating and changing sites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.audit import record_audit
from frontdesk.actions.widget_config import check_offers, check_quick_actions
from frontdesk.errors import invalid_request
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.models import Site, utcnow
from frontdesk.responders.config import DEFAULT_RESPONDER, parse_responder, seal_responder
from frontdesk.security.keys import SecretBox, new_site_secret
from frontdesk.security.limits_policy import check_site_limits
from frontdesk.security.origins import OriginError, normalise_origin
from frontdesk.security.principals import Principal

SUPPORTED_LOCALES = ("en", "ru")


def check_origins(origins: list[str]) -> list[str]:
    normalised: list[str] = []
    for origin in origins:
        try:
            value = normalise_origin(origin, allow_wildcard=True)
        except OriginError as exc:
            raise invalid_request(str(exc)) from exc
        if value not in normalised:
            normalised.append(value)
    return normalised


def check_responder(raw: dict[str, Any] | None) -> dict[str, Any]:
    raw = raw if raw is not None else dict(DEFAULT_RESPONDER)
    try:
        parse_responder(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise invalid_request(f"responder {where}: {first.get('msg')}") from exc
    return raw


def check_site_name(name: str) -> str:
    name = name.strip()
    if not 0 < len(name) <= 200:
        raise invalid_request("A site name must have 1 to 200 characters.")
    return name


def _checked_limits(limits: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_site_limits(limits)
    except ValueError as exc:
        raise invalid_request(f"limits: {exc}") from exc


@dataclass(frozen=True, slots=True)
class CreatedSite:
    site: Site
    secret: str


async def do_create_site(
    session: AsyncSession,
    box: SecretBox,
    *,
    name: str,
    origins: list[str],
    responder: dict[str, Any] | None = None,
    greeting: str = "",
    locale: str = "en",
    site_id: str | None = None,
    options: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    actor: Principal | None = None,
) -> CreatedSite:
    """Create a site; its secret is returned once and stored sealed."""
    if locale not in SUPPORTED_LOCALES:
        raise invalid_request(f"locale must be one of {', '.join(SUPPORTED_LOCALES)}.")
    secret = new_site_secret()
    site = Site(
        id=site_id or new_id("site"),
        name=check_site_name(name),
        allowed_origins=check_origins(origins),
        secret_encrypted=box.seal(secret),
        greeting=greeting,
        locale=locale,
        responder=seal_responder(check_responder(responder), box),
        appearance={},
        quick_actions=[],
        offers=[],
        limits=_checked_limits(limits or {}),
        options=check_options(options or {}),
    )
    session.add(site)
    record_audit(session, actor, "site.created", target=site.id, site_id=site.id)
    record_event(
        session,
        "site.created",
        site_id=site.id,
        data={"name": site.name, "allowed_origins": site.allowed_origins},
    )
    return CreatedSite(site=site, secret=secret)


SITE_OPTIONS = frozenset({"require_identity", "allow_native_clients", "answer_cache"})


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - SITE_OPTIONS
    if unknown:
        raise invalid_request(f"unknown site options: {', '.join(sorted(unknown))}.")
    if not all(isinstance(v, bool) for v in options.values()):
        raise invalid_request("site options are booleans.")
    return options


async def do_update_site(
    session: AsyncSession,
    box: SecretBox,
    site: Site,
    changes: dict[str, Any],
    *,
    actor: Principal | None,
) -> Site:
    """Apply validated changes (only the fields present in `changes`)."""
    if "name" in changes:
        site.name = check_site_name(changes["name"])
    if "allowed_origins" in changes:
        site.allowed_origins = check_origins(changes["allowed_origins"])
    if "greeting" in changes:
        site.greeting = changes["greeting"]
    if "locale" in changes:
        if changes["locale"] not in SUPPORTED_LOCALES:
            raise invalid_request(f"locale must be one of {', '.join(SUPPORTED_LOCALES)}.")
        site.locale = changes["locale"]
    if "responder" in changes:
        site.responder = seal_responder(check_responder(changes["responder"]), box)
    if "quick_actions" in changes:
        site.quick_actions = check_quick_actions(changes["quick_actions"])
    if "offers" in changes:
        site.offers = check_offers(changes["offers"])
    if "appearance" in changes:
        site.appearance = dict(changes["appearance"])
    if "limits" in changes:
        site.limits = _checked_limits(dict(changes["limits"]))
    if "options" in changes:
        site.options = {**site.options, **check_options(changes["options"])}
    site.updated_at = utcnow()
    shown = {k: v for k, v in changes.items() if k not in ("responder", "offers")}
    record_audit(session, actor, "site.updated", target=site.id, site_id=site.id, data=shown)
    record_event(session, "site.updated", site_id=site.id, data={"fields": sorted(changes)})
    return site


async def do_rotate_site_secret(
    session: AsyncSession, box: SecretBox, site: Site, *, actor: Principal | None
) -> str:
    secret = new_site_secret()
    site.secret_encrypted = box.seal(secret)
    site.updated_at = utcnow()
    record_audit(session, actor, "site.secret_rotated", target=site.id, site_id=site.id)
    return secret


async def do_delete_site(session: AsyncSession, site: Site, *, actor: Principal | None) -> None:
    record_audit(session, actor, "site.deleted", target=site.id, site_id=site.id)
    await session.delete(site)

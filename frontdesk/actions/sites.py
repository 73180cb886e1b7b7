"""Creating and changing sites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.errors import invalid_request
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.models import Site
from frontdesk.responders.config import DEFAULT_RESPONDER, parse_responder, seal_responder
from frontdesk.security.keys import SecretBox, new_site_secret
from frontdesk.security.origins import OriginError, normalise_origin

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
        limits={},
        options=options or {},
    )
    session.add(site)
    record_event(
        session,
        "site.created",
        site_id=site.id,
        data={"name": site.name, "allowed_origins": site.allowed_origins},
    )
    return CreatedSite(site=site, secret=secret)

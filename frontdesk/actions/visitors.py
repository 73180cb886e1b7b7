"""Visitor sessions: creating or recognising a visitor and issuing, rotating, revoking tokens.

Refresh tokens rotate on every use. Presenting one that was already used (or revoked) is treated
as theft: the whole family is revoked and `visitor.tokens_revoked` recorded. That outcome is
returned, not raised, so the revocation commits before the router answers 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.config import Settings
from frontdesk.errors import AppError, unauthorized
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.models import RefreshToken, Site, Visitor, utcnow
from frontdesk.security.identity import verify_identity
from frontdesk.security.keys import SecretBox, sha256_hex
from frontdesk.security.tokens import AccessTokens, new_refresh_token


@dataclass(frozen=True, slots=True)
class IssuedSession:
    visitor: Visitor
    access_token: str
    refresh_token: str
    expires_in: int


async def _find_verified(session: AsyncSession, site_id: str, user_id: str) -> Visitor | None:
    stmt = select(Visitor).where(Visitor.site_id == site_id, Visitor.external_user_id == user_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def _resolve_visitor(
    session: AsyncSession,
    site: Site,
    box: SecretBox,
    *,
    visitor_id: str | None,
    identity: dict[str, Any] | None,
    locale: str | None,
) -> Visitor:
    now = utcnow()
    if identity is not None:
        user_id = verify_identity(identity, site_id=site.id, secret=box.open(site.secret_encrypted))
        visitor = await _find_verified(session, site.id, user_id)
        if visitor is None:
            visitor = Visitor(
                id=new_id("vis"),
                site_id=site.id,
                external_user_id=user_id,
                verified=True,
                locale=locale,
                created_at=now,
                last_seen_at=now,
            )
            session.add(visitor)
            record_event(
                session,
                "visitor.identified",
                site_id=site.id,
                data={"visitor_id": visitor.id, "user_id": user_id},
            )
        visitor.last_seen_at = now
        return visitor
    if site.options.get("require_identity"):
        raise AppError("identity_invalid", "This site requires a verified identity.", 401)
    if visitor_id:
        # An anonymous visitor may continue by id (ids are 128-bit random); a verified
        # visitor can only be continued with a fresh identity proof.
        visitor = await session.get(Visitor, visitor_id)
        if visitor is not None and visitor.site_id == site.id and not visitor.verified:
            visitor.last_seen_at = now
            if locale:
                visitor.locale = locale
            return visitor
    visitor = Visitor(
        id=new_id("vis"), site_id=site.id, locale=locale, created_at=now, last_seen_at=now
    )
    session.add(visitor)
    return visitor


def _new_refresh_row(
    visitor: Visitor, settings: Settings, *, family_id: str | None, family_expires: Any
) -> tuple[str, RefreshToken]:
    token, token_hash = new_refresh_token()
    now = utcnow()
    row = RefreshToken(
        id=new_id("rt"),
        family_id=family_id or new_id("rtf"),
        visitor_id=visitor.id,
        site_id=visitor.site_id,
        token_hash=token_hash,
        issued_at=now,
        expires_at=now + timedelta(seconds=settings.refresh_token_idle_s),
        family_expires_at=family_expires
        or now + timedelta(seconds=settings.refresh_token_absolute_s),
    )
    return token, row


async def do_start_session(
    session: AsyncSession,
    site: Site,
    *,
    box: SecretBox,
    tokens: AccessTokens,
    settings: Settings,
    visitor_id: str | None,
    identity: dict[str, Any] | None,
    locale: str | None,
) -> IssuedSession:
    visitor = await _resolve_visitor(
        session, site, box, visitor_id=visitor_id, identity=identity, locale=locale
    )
    await session.flush()  # the token row references the visitor
    refresh, row = _new_refresh_row(visitor, settings, family_id=None, family_expires=None)
    session.add(row)
    await session.flush()
    access = tokens.issue(site_id=site.id, visitor_id=visitor.id, verified=visitor.verified)
    return IssuedSession(visitor, access, refresh, tokens.ttl_s)


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    issued: IssuedSession | None
    reused: bool = False


async def find_refresh_token(session: AsyncSession, token: str) -> RefreshToken | None:
    stmt = select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(token))
    return (await session.execute(stmt)).scalar_one_or_none()


async def do_refresh_session(
    session: AsyncSession,
    row: RefreshToken,
    *,
    tokens: AccessTokens,
    settings: Settings,
) -> RefreshOutcome:
    """Rotate `row` (loaded in this session with `find_refresh_token`)."""
    now = utcnow()
    if row.used_at is not None or row.revoked_at is not None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == row.family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        record_event(
            session,
            "visitor.tokens_revoked",
            site_id=row.site_id,
            data={"visitor_id": row.visitor_id, "reason": "refresh_token_reused"},
        )
        return RefreshOutcome(issued=None, reused=True)
    if row.expires_at <= now or row.family_expires_at <= now:
        raise unauthorized("The refresh token has expired; start a new session.")
    visitor = await session.get(Visitor, row.visitor_id)
    if visitor is None:
        raise unauthorized("The refresh token is invalid.")
    row.used_at = now
    visitor.last_seen_at = now
    refresh, new_row = _new_refresh_row(
        visitor, settings, family_id=row.family_id, family_expires=row.family_expires_at
    )
    session.add(new_row)
    access = tokens.issue(site_id=row.site_id, visitor_id=visitor.id, verified=visitor.verified)
    return RefreshOutcome(issued=IssuedSession(visitor, access, refresh, tokens.ttl_s))

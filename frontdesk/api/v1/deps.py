"""Authentication and authorisation of REST calls.

A call is made either with an API key (`Authorization: Bearer fd_…`) or with an operator's session
cookie. Cookie-authenticated unsafe requests must also pass the CSRF checks: a valid signed
double-submit token, and no `Sec-Fetch-Site: cross-site` or foreign `Origin`. Each route states
the permission it needs with `require("…")`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from sqlalchemy import select, update

from frontdesk.actions.operator_sessions import session_alive
from frontdesk.api.deps import ServicesDep, bearer_token, request_ip
from frontdesk.api.limits import enforce_default
from frontdesk.errors import AppError, forbidden, unauthorized
from frontdesk.models import ApiKey, Operator, OperatorSession, utcnow
from frontdesk.security.apikeys import PREFIX, looks_valid
from frontdesk.security.keys import sha256_hex
from frontdesk.security.operator_sessions import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
)
from frontdesk.security.origins import normalise_origin
from frontdesk.security.principals import Principal, api_key_principal, operator_principal
from frontdesk.services import Services

TOUCH_EVERY = timedelta(seconds=60)


async def principal_from_api_key(services: Services, key: str, ip: str | None) -> Principal:
    if not looks_valid(key):
        raise unauthorized("The API key is invalid.")
    async with services.db.read_scope() as session:
        stmt = select(ApiKey).where(ApiKey.key_hash == sha256_hex(key))
        row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        raise unauthorized("The API key is invalid or revoked.")
    now = utcnow()
    if row.last_used_at is None or row.last_used_at + TOUCH_EVERY < now:
        # Recorded at most once a minute per key so that reads stay reads.
        async with services.db.session_scope() as session:
            await session.execute(
                update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now)
            )
    await enforce_default(services, "api_key", row.id)
    return api_key_principal(row.id, list(row.scopes), row.site_id, ip)


def same_origin(services: Services, origin: str) -> bool:
    own = urlsplit(services.settings.public_url)
    try:
        return normalise_origin(origin) == normalise_origin(f"{own.scheme}://{own.netloc}")
    except ValueError:
        return False


def _check_csrf(request: Request, services: Services, session_hash: str) -> None:
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise forbidden("Cross-site requests are not allowed.")
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(services, origin):
        raise forbidden("Requests from another origin are not allowed.")
    if not services.csrf.valid(
        session_hash, request.headers.get(CSRF_HEADER), request.cookies.get(CSRF_COOKIE)
    ):
        raise forbidden("The CSRF token is missing or invalid.")


async def principal_from_session(
    services: Services, token: str, ip: str | None
) -> tuple[Principal, str]:
    """The operator behind a session cookie, and the session's hash (for the CSRF check)."""
    token_hash = sha256_hex(token)
    async with services.db.read_scope() as session:
        stmt = (
            select(OperatorSession, Operator)
            .join(Operator, Operator.id == OperatorSession.operator_id)
            .where(OperatorSession.token_hash == token_hash)
        )
        found = (await session.execute(stmt)).first()
    if found is None:
        raise unauthorized("Sign in first.")
    row, operator = found
    if not session_alive(row) or operator.disabled:
        raise unauthorized("The session has ended; sign in again.")
    if row.last_seen_at + TOUCH_EVERY < utcnow():
        async with services.db.session_scope() as session:
            await session.execute(
                update(OperatorSession)
                .where(OperatorSession.id == row.id)
                .values(last_seen_at=utcnow())
            )
    return operator_principal(operator.id, operator.role, ip), token_hash


async def current_principal(request: Request, services: ServicesDep) -> Principal:
    ip = request_ip(request, services)
    authorization = request.headers.get("authorization")
    if authorization:
        token = bearer_token(request)
        if not token.startswith(PREFIX):
            raise unauthorized("Use an API key (fd_…) or sign in.")
        return await principal_from_api_key(services, token, ip)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal, session_hash = await principal_from_session(services, cookie, ip)
        _check_csrf(request, services, session_hash)
        return principal
    raise unauthorized("Use an API key (fd_…) or sign in.")


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not principal.can(permission):
            raise AppError("forbidden", f"This needs the '{permission}' permission.", 403)
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Owner = Annotated[Principal, Depends(require("owner"))]

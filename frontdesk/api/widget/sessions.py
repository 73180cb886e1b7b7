"""Visitor sessions: issuing and refreshing tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request

from frontdesk.actions.visitors import (
    IssuedSession,
    do_refresh_session,
    do_start_session,
    find_refresh_token,
)
from frontdesk.api.deps import ServicesDep, check_origin, request_ip, request_origin
from frontdesk.api.limits import enforce_default
from frontdesk.api.widget.schemas import SessionCreate, SessionIssued, SessionRefresh
from frontdesk.errors import AppError, unauthorized
from frontdesk.queries.sites import get_site

router = APIRouter(prefix="/sessions", tags=["widget"])


def _issued(issued: IssuedSession) -> SessionIssued:
    return SessionIssued(
        visitor_id=issued.visitor.id,
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        verified=issued.visitor.verified,
    )


@router.post("", status_code=201, response_model=SessionIssued, summary="Start a visitor session")
async def create_session(
    body: SessionCreate, request: Request, services: ServicesDep
) -> SessionIssued:
    """Issue an access token (minutes) and a rotating refresh token for a visitor of a site.

    The request's `Origin` must be allowed for the site. With `identity`, the visitor is verified
    and keeps their conversations across devices.
    """
    site = await services.sites.get(body.site_id)
    check_origin(services, site, request_origin(request, services))
    await enforce_default(services, "ip_sessions", request_ip(request, services))
    async with services.db.session_scope() as session:
        issued = await do_start_session(
            session,
            await get_site(session, site.id),
            box=services.box,
            tokens=services.tokens,
            settings=services.settings,
            visitor_id=body.visitor_id,
            identity=body.identity,
            locale=body.locale,
        )
    return _issued(issued)


@router.post("/refresh", response_model=SessionIssued, summary="Rotate the refresh token")
async def refresh_session(
    body: SessionRefresh, request: Request, services: ServicesDep
) -> SessionIssued:
    """Exchange a refresh token for a new pair. A token can be used once; presenting it again
    revokes every token of that visitor session (`refresh_token_reused`)."""
    async with services.db.session_scope() as session:
        row = await find_refresh_token(session, body.refresh_token)
        if row is None:
            raise unauthorized("The refresh token is invalid.")
        site = await services.sites.get(row.site_id)
        check_origin(services, site, request_origin(request, services))
        outcome = await do_refresh_session(
            session, row, tokens=services.tokens, settings=services.settings
        )
    if outcome.reused or outcome.issued is None:
        raise AppError(
            "refresh_token_reused",
            "This refresh token was already used; the session has been revoked.",
            401,
        )
    return _issued(outcome.issued)

"""Operator sign-in, sign-out and identity (`/api/v1/auth`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import select

from frontdesk.actions.operator_sessions import do_sign_in, do_sign_out
from frontdesk.api.deps import ServicesDep, request_ip
from frontdesk.api.limits import enforce_default
from frontdesk.api.v1.deps import Reader
from frontdesk.api.v1.schemas import Login, LoginResult, OperatorOut
from frontdesk.errors import unauthorized
from frontdesk.models import Operator
from frontdesk.security.operator_sessions import ABSOLUTE_TIMEOUT, CSRF_COOKIE, SESSION_COOKIE

router = APIRouter(prefix="/auth", tags=["auth"])


def operator_out(operator: Operator) -> OperatorOut:
    return OperatorOut(
        id=operator.id,
        email=operator.email,
        name=operator.name,
        role=operator.role,
        disabled=operator.disabled,
    )


@router.post("/login", response_model=LoginResult, summary="Sign in as an operator")
async def login(
    body: Login, request: Request, response: Response, services: ServicesDep
) -> LoginResult:
    """Start a dashboard session: sets the session cookie and returns the CSRF token to send
    as `X-CSRF-Token` on every unsafe request."""
    ip = request_ip(request, services)
    await enforce_default(services, "login_ip", ip)
    await enforce_default(services, "login_account", body.email.strip().lower())
    async with services.db.session_scope() as session:
        signed_in = await do_sign_in(
            session,
            email=body.email,
            password=body.password,
            previous_token=request.cookies.get(SESSION_COOKIE),
            ip=ip,
            user_agent=request.headers.get("user-agent"),
        )
    csrf = services.csrf.for_session(signed_in.token_hash)
    max_age = int(ABSOLUTE_TIMEOUT.total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.token,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, path="/", secure=True, httponly=False, samesite="lax"
    )
    return LoginResult(operator=operator_out(signed_in.operator), csrf_token=csrf)


@router.post("/logout", status_code=204, summary="Sign out")
async def logout(_: Reader, request: Request, services: ServicesDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        async with services.db.session_scope() as session:
            await do_sign_out(session, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=True, samesite="lax")
    return response


@router.get("/me", response_model=OperatorOut, summary="The signed-in operator")
async def me(principal: Reader, services: ServicesDep) -> OperatorOut:
    if principal.kind != "operator":
        raise unauthorized("This is for signed-in operators.")
    async with services.db.read_scope() as session:
        operator = (
            await session.execute(select(Operator).where(Operator.id == principal.id))
        ).scalar_one()
    return operator_out(operator)

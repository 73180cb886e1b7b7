"""Signing operators in and out.

Sign-in always creates a new session (the id is rotated at login) and revokes the one the browser
presented, if any. Unknown emails cost the same argon2 work as wrong passwords, so response time
does not reveal which accounts exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.audit import record_audit
from frontdesk.errors import AppError
from frontdesk.ids import new_id
from frontdesk.models import Operator, OperatorSession, utcnow
from frontdesk.security.keys import sha256_hex
from frontdesk.security.operator_sessions import ABSOLUTE_TIMEOUT, IDLE_TIMEOUT, new_session_token
from frontdesk.security.passwords import hash_password, verify_password
from frontdesk.security.principals import operator_principal

_DUMMY_HASH = hash_password("not-a-real-password-for-timing")


def bad_credentials() -> AppError:
    return AppError("unauthorized", "The email or password is wrong.", 401)


@dataclass(frozen=True, slots=True)
class SignedIn:
    operator: Operator
    token: str
    token_hash: str


async def do_sign_in(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    previous_token: str | None,
    ip: str | None,
    user_agent: str | None,
) -> SignedIn:
    stmt = select(Operator).where(Operator.email == email.strip().lower())
    operator = (await session.execute(stmt)).scalar_one_or_none()
    if operator is None:
        verify_password(_DUMMY_HASH, password)
        raise bad_credentials()
    if not verify_password(operator.password_hash, password) or operator.disabled:
        raise bad_credentials()
    now = utcnow()
    if previous_token:
        await do_sign_out(session, previous_token)
    token, token_hash = new_session_token()
    session.add(
        OperatorSession(
            id=new_id("ses"),
            token_hash=token_hash,
            operator_id=operator.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + ABSOLUTE_TIMEOUT,
            ip=ip,
            user_agent=(user_agent or "")[:300],
        )
    )
    record_audit(session, operator_principal(operator.id, operator.role, ip), "operator.signed_in")
    return SignedIn(operator, token, token_hash)


async def do_sign_out(session: AsyncSession, token: str) -> None:
    stmt = select(OperatorSession).where(OperatorSession.token_hash == sha256_hex(token))
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()


async def do_touch_session(session: AsyncSession, session_id: str) -> None:
    row = await session.get(OperatorSession, session_id)
    if row is not None:
        row.last_seen_at = utcnow()


def session_alive(row: OperatorSession) -> bool:
    now = utcnow()
    return row.revoked_at is None and row.expires_at > now and row.last_seen_at + IDLE_TIMEOUT > now

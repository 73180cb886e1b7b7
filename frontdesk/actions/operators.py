"""Operator accounts."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.actions.audit import record_audit
from frontdesk.errors import AppError, invalid_request
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.models import OPERATOR_ROLES, Operator
from frontdesk.security.passwords import hash_password
from frontdesk.security.principals import Principal

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
MIN_PASSWORD = 12


def check_operator(email: str, password: str, role: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise invalid_request("email is not a valid address.")
    if len(password) < MIN_PASSWORD:
        raise invalid_request(f"password must have at least {MIN_PASSWORD} characters.")
    if role not in OPERATOR_ROLES:
        raise invalid_request(f"role must be one of {', '.join(OPERATOR_ROLES)}.")
    return email


async def do_create_operator(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    role: str = "operator",
    name: str = "",
    actor: Principal | None = None,
) -> Operator:
    email = check_operator(email, password, role)
    taken = await session.execute(select(Operator.id).where(Operator.email == email))
    if taken.first() is not None:
        raise AppError("conflict", "An operator with this email exists.", 409)
    operator = Operator(
        id=new_id("op"), email=email, name=name, password_hash=hash_password(password), role=role
    )
    session.add(operator)
    record_audit(session, actor, "operator.created", target=operator.id, data={"role": role})
    record_event(
        session, "operator.created", site_id=None, data={"operator_id": operator.id, "role": role}
    )
    return operator


async def do_update_operator(
    session: AsyncSession,
    operator: Operator,
    *,
    role: str | None,
    disabled: bool | None,
    actor: Principal | None,
) -> Operator:
    if role is not None:
        if role not in OPERATOR_ROLES:
            raise invalid_request(f"role must be one of {', '.join(OPERATOR_ROLES)}.")
        operator.role = role
    if disabled is not None:
        operator.disabled = disabled
    record_audit(
        session,
        actor,
        "operator.updated",
        target=operator.id,
        data={"role": role, "disabled": disabled},
    )
    return operator

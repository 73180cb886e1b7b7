"""Operators and roles (`/api/v1/operators`). Only owners create or change accounts."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from frontdesk.actions.operators import do_create_operator, do_update_operator
from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.auth import operator_out
from frontdesk.api.v1.deps import Admin, Owner
from frontdesk.api.v1.schemas import OperatorCreate, OperatorList, OperatorOut, OperatorUpdate
from frontdesk.errors import not_found
from frontdesk.models import Operator

router = APIRouter(prefix="/operators", tags=["operators"])


@router.get("", response_model=OperatorList, summary="List operators")
async def list_operators(_: Admin, services: ServicesDep) -> OperatorList:
    async with services.db.read_scope() as session:
        rows = (await session.execute(select(Operator).order_by(Operator.created_at))).scalars()
        return OperatorList(operators=[operator_out(o) for o in rows])


@router.post("", status_code=201, response_model=OperatorOut, summary="Create an operator")
async def create_operator(
    body: OperatorCreate, principal: Owner, services: ServicesDep
) -> OperatorOut:
    async with services.db.session_scope() as session:
        operator = await do_create_operator(
            session,
            email=body.email,
            password=body.password,
            role=body.role,
            name=body.name,
            actor=principal,
        )
    return operator_out(operator)


@router.patch("/{operator_id}", response_model=OperatorOut, summary="Change role or disable")
async def update_operator(
    operator_id: str, body: OperatorUpdate, principal: Owner, services: ServicesDep
) -> OperatorOut:
    async with services.db.session_scope() as session:
        operator = await session.get(Operator, operator_id) if len(operator_id) <= 40 else None
        if operator is None:
            raise not_found("No such operator.")
        await do_update_operator(
            session, operator, role=body.role, disabled=body.disabled, actor=principal
        )
        return operator_out(operator)

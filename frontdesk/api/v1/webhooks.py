"""Webhooks (`/api/v1/webhooks`): endpoints, the delivery log, redelivery, test sends, secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator
from sqlalchemy import func, select

from frontdesk.actions.webhooks import (
    do_create_endpoint,
    do_redeliver,
    do_rotate_endpoint_secret,
    do_update_endpoint,
)
from frontdesk.api.deps import ServicesDep
from frontdesk.api.v1.deps import Admin
from frontdesk.api.v1.params import utc_bound
from frontdesk.errors import invalid_request, not_found
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.jobs.queue import enqueue
from frontdesk.models import EventRecord, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from frontdesk.queries.sites import get_site, site_not_found
from frontdesk.security.principals import Principal
from frontdesk.services import Services
from frontdesk.webhooks.fanout import payload_for

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: StrictStr = Field(max_length=2000)
    events: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=50)
    site_id: StrictStr | None = Field(default=None, max_length=40)
    description: StrictStr = Field(default="", max_length=300)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: StrictStr | None = Field(default=None, max_length=2000)
    events: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=50)
    enabled: StrictBool | None = None


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    site_id: str | None
    description: str
    status: str
    disabled_reason: str | None
    created_at: str


class EndpointCreated(EndpointOut):
    secret: str = Field(description="`whsec_…`, shown once.")


class EndpointList(BaseModel):
    webhooks: list[EndpointOut]


class SecretOut(BaseModel):
    secret: str


class AttemptOut(BaseModel):
    number: int
    at: str
    status_code: int | None
    duration_ms: int
    response: str | None
    error: str | None


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    next_attempt_at: str | None
    created_at: str
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None


class RedeliverAll(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: datetime = Field(description="An ISO 8601 time with a zone.")

    @field_validator("since", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("since must be an ISO 8601 time")
        return value


class Redelivered(BaseModel):
    redelivered: int


def endpoint_out(row: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=row.id,
        url=row.url,
        events=list(row.events),
        site_id=row.site_id,
        description=row.description,
        status=row.status,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at.isoformat(),
    )


async def _endpoint(services: Services, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    async with services.db.read_scope() as session:
        row = await session.get(WebhookEndpoint, endpoint_id) if len(endpoint_id) <= 40 else None
    if row is None or not principal.may_see_site(row.site_id):
        raise not_found("No such webhook endpoint.")
    return row


@router.post("", status_code=201, response_model=EndpointCreated, summary="Add an endpoint")
async def create_endpoint(
    body: EndpointCreate, principal: Admin, services: ServicesDep
) -> EndpointCreated:
    """Events matching `events` (exact types, `prefix.*` or `*`) are POSTed to `url`, signed
    per Standard Webhooks with the returned secret (shown only here)."""
    site_id = body.site_id or principal.site_id
    if not principal.may_see_site(site_id):
        raise site_not_found()
    async with services.db.session_scope() as session:
        if site_id:
            await get_site(session, site_id)
        created = await do_create_endpoint(
            session,
            services.box,
            url=body.url,
            events=body.events,
            site_id=site_id,
            description=body.description,
            actor=principal,
        )
    return EndpointCreated(**endpoint_out(created.endpoint).model_dump(), secret=created.secret)


@router.get("", response_model=EndpointList, summary="List endpoints")
async def list_endpoints(principal: Admin, services: ServicesDep) -> EndpointList:
    async with services.db.read_scope() as session:
        stmt = (
            select(WebhookEndpoint)
            .where(WebhookEndpoint.channel_id.is_(None))
            .order_by(WebhookEndpoint.created_at)
        )
        if principal.site_id:
            stmt = stmt.where(WebhookEndpoint.site_id == principal.site_id)
        rows = (await session.execute(stmt)).scalars().all()
    return EndpointList(webhooks=[endpoint_out(r) for r in rows])


@router.patch("/{endpoint_id}", response_model=EndpointOut, summary="Change or re-enable")
async def update_endpoint(
    endpoint_id: str, body: EndpointUpdate, principal: Admin, services: ServicesDep
) -> EndpointOut:
    await _endpoint(services, principal, endpoint_id)
    async with services.db.session_scope() as session:
        row = await session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        do_update_endpoint(row, url=body.url, events=body.events, enabled=body.enabled)
        return endpoint_out(row)


@router.delete("/{endpoint_id}", status_code=204, summary="Remove an endpoint")
async def delete_endpoint(endpoint_id: str, principal: Admin, services: ServicesDep) -> Response:
    await _endpoint(services, principal, endpoint_id)
    async with services.db.session_scope() as session:
        row = await session.get(WebhookEndpoint, endpoint_id)
        if row is not None:
            await session.delete(row)
    return Response(status_code=204)


@router.post("/{endpoint_id}/secret", response_model=SecretOut, summary="Rotate the secret")
async def rotate_secret(endpoint_id: str, principal: Admin, services: ServicesDep) -> SecretOut:
    """A new secret; for 24 hours deliveries carry signatures with both the old and the new."""
    await _endpoint(services, principal, endpoint_id)
    async with services.db.session_scope() as session:
        row = await session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        secret = await do_rotate_endpoint_secret(session, services.box, row, actor=principal)
    return SecretOut(secret=secret)


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryPage, summary="The delivery log")
async def list_deliveries(
    endpoint_id: str,
    principal: Admin,
    services: ServicesDep,
    status: Annotated[str | None, Query(pattern="^(pending|succeeded|dead)$")] = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryPage:
    """Newest first, each with its attempts (status, duration, the start of the response)."""
    await _endpoint(services, principal, endpoint_id)
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.event_offset.desc(), WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    if cursor:
        if not cursor.isdigit():
            raise invalid_request("cursor is invalid.")
        stmt = stmt.where(WebhookDelivery.event_offset < int(cursor))
    async with services.db.read_scope() as session:
        rows = list((await session.execute(stmt)).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        ids = [r.id for r in rows]
        attempts: dict[str, list[WebhookAttempt]] = {i: [] for i in ids}
        if ids:
            found = await session.execute(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(ids))
                .order_by(WebhookAttempt.number)
            )
            for attempt in found.scalars():
                attempts[attempt.delivery_id].append(attempt)
    return DeliveryPage(
        deliveries=[_delivery_out(r, attempts[r.id]) for r in rows],
        next_cursor=str(rows[-1].event_offset) if more and rows else None,
    )


def _delivery_out(row: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        next_attempt_at=row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        created_at=row.created_at.isoformat(),
        attempt_log=[
            AttemptOut(
                number=a.number,
                at=a.at.isoformat(),
                status_code=a.status_code,
                duration_ms=a.duration_ms,
                response=a.response,
                error=a.error,
            )
            for a in attempts
        ],
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=Redelivered,
    summary="Send one delivery again",
)
async def redeliver_one(
    endpoint_id: str, delivery_id: str, principal: Admin, services: ServicesDep
) -> Redelivered:
    await _endpoint(services, principal, endpoint_id)
    async with services.db.session_scope() as session:
        row = await session.get(WebhookDelivery, delivery_id) if len(delivery_id) <= 40 else None
        if row is None or row.endpoint_id != endpoint_id:
            raise not_found("No such delivery.")
        do_redeliver(session, row, now=services.worker.clock.now())
    services.worker.wake()
    return Redelivered(redelivered=1)


@router.post(
    "/{endpoint_id}/redeliver",
    status_code=202,
    response_model=Redelivered,
    summary="Send again every failed delivery since a time",
)
async def redeliver_failed(
    endpoint_id: str, body: RedeliverAll, principal: Admin, services: ServicesDep
) -> Redelivered:
    await _endpoint(services, principal, endpoint_id)
    since = utc_bound(body.since, "since")
    async with services.db.session_scope() as session:
        rows = (
            (
                await session.execute(
                    select(WebhookDelivery).where(
                        WebhookDelivery.endpoint_id == endpoint_id,
                        WebhookDelivery.status == "dead",
                        WebhookDelivery.created_at >= since,
                    )
                )
            )
            .scalars()
            .all()
        )
        for row in rows:
            do_redeliver(session, row, now=services.worker.clock.now())
    services.worker.wake()
    return Redelivered(redelivered=len(rows))


@router.post(
    "/{endpoint_id}/test", status_code=202, response_model=Redelivered, summary="Test send"
)
async def test_send(endpoint_id: str, principal: Admin, services: ServicesDep) -> Redelivered:
    """Send a `webhook.test` event to this endpoint only, through the normal delivery path."""
    endpoint = await _endpoint(services, principal, endpoint_id)
    data: dict[str, Any] = {"endpoint_id": endpoint.id, "message": "This is a test delivery."}
    now = services.worker.clock.now()
    async with services.db.session_scope() as session:
        event = record_event(session, "webhook.test", site_id=endpoint.site_id, data=data)
        event.at = now
        head = (await session.execute(select(func.max(EventRecord.offset)))).scalar() or 0
        delivery = WebhookDelivery(
            id=new_id("msg"),
            endpoint_id=endpoint.id,
            event_id=event.id,
            event_offset=int(head) + 1,
            event_type=event.type,
            payload=payload_for(event, services.settings.public_url).decode(),
            status="pending",
            next_attempt_at=now,
            created_at=now,
        )
        session.add(delivery)
        enqueue(session, "webhook.deliver", {"delivery_id": delivery.id}, run_at=now)
    services.worker.wake()
    return Redelivered(redelivered=1)

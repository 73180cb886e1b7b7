"""The widget's public configuration, click-to-unlock offers, and leads.

`GET /sites/{site_id}/config` is what the loader reads before any chat code loads: cheap, cached
by ETag, and refused for origins the site does not allow (so the loader can say why). Offers are
listed with their content only when unlocked; unlocking takes the contact fields the offer asks
for and records a lead.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from sqlalchemy import select

from frontdesk.actions.leads import check_contact, do_capture_lead
from frontdesk.actions.widget_config import public_offer
from frontdesk.api.deps import ServicesDep, VisitorSite, WidgetVisitor, check_origin, request_origin
from frontdesk.api.limits import enforce_default
from frontdesk.errors import not_found
from frontdesk.models import Lead, Site
from frontdesk.queries.conversations import access_conversation

router = APIRouter(tags=["widget"])


class ContactBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    email: StrictStr | None = Field(default=None, max_length=320)
    name: StrictStr | None = Field(default=None, max_length=200)
    phone: StrictStr | None = Field(default=None, max_length=40)
    conversation_id: StrictStr | None = Field(default=None, max_length=40)
    referrer: StrictStr | None = Field(default=None, max_length=1000)
    utm: dict[str, Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict, max_length=10
    )


class OfferOut(BaseModel):
    id: str
    title: str
    teaser: str
    fields: list[str]
    unlocked: bool
    content: str | None = None


class OfferList(BaseModel):
    offers: list[OfferOut]


class LeadOut(BaseModel):
    lead_id: str
    offer: OfferOut | None = None


@router.get("/sites/{site_id}/config", summary="The widget's public configuration")
async def site_config(
    site_id: str,
    request: Request,
    services: ServicesDep,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Appearance, greeting, locale, quick actions and offer teasers (never offer content)."""
    site = await services.sites.get(site_id)
    check_origin(services, site, request_origin(request, services))
    async with services.db.read_scope() as session:
        row = await session.get(Site, site.id)
    assert row is not None
    body = orjson.dumps(
        {
            "site_id": row.id,
            "name": row.name,
            "greeting": row.greeting,
            "locale": row.locale,
            "appearance": row.appearance,
            "quick_actions": row.quick_actions,
            "offers": [public_offer(o, unlocked=False) for o in row.offers],
        }
    )
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=60", "Vary": "Origin"}
    if if_none_match == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


async def _unlocked_offer_ids(services: ServicesDep, visitor_id: str) -> set[str]:
    async with services.db.read_scope() as session:
        stmt = select(Lead.offer_id).where(
            Lead.visitor_id == visitor_id, Lead.offer_id.is_not(None)
        )
        return {str(o) for o in (await session.execute(stmt)).scalars()}


async def _offers(services: ServicesDep, site_id: str) -> list[dict[str, Any]]:
    async with services.db.read_scope() as session:
        row = await session.get(Site, site_id)
    return list(row.offers) if row is not None else []


@router.get(
    "/offers",
    response_model=OfferList,
    response_model_exclude_none=True,
    summary="The site's offers for this visitor",
)
async def list_offers(visitor: WidgetVisitor, services: ServicesDep) -> OfferList:
    unlocked = await _unlocked_offer_ids(services, visitor.visitor_id)
    offers = await _offers(services, visitor.site_id)
    return OfferList(
        offers=[OfferOut(**public_offer(o, unlocked=o["id"] in unlocked)) for o in offers]
    )


async def _capture(
    services: ServicesDep,
    visitor: WidgetVisitor,
    body: ContactBody,
    offer: dict[str, Any] | None,
) -> Lead:
    await enforce_default(services, "visitor_events", visitor.visitor_id)
    contact = check_contact(
        email=body.email,
        name=body.name,
        phone=body.phone,
        required=list(offer["fields"]) if offer else [],
    )
    async with services.db.session_scope() as session:
        if body.conversation_id:
            await access_conversation(session, visitor, body.conversation_id)
        return do_capture_lead(
            session,
            site_id=visitor.site_id,
            visitor_id=visitor.visitor_id,
            contact=contact,
            offer=offer,
            conversation_id=body.conversation_id,
            referrer=body.referrer,
            utm=body.utm,
            dashboard_url=f"{services.settings.public_url}/dashboard",
        )


@router.post(
    "/offers/{offer_id}/unlock", status_code=201, response_model=LeadOut, summary="Unlock an offer"
)
async def unlock_offer(
    offer_id: str, body: ContactBody, visitor: WidgetVisitor, services: ServicesDep
) -> LeadOut:
    """Leave the contact details the offer asks for; the response carries its content."""
    offer = next((o for o in await _offers(services, visitor.site_id) if o["id"] == offer_id), None)
    if offer is None:
        raise not_found("No such offer.")
    lead = await _capture(services, visitor, body, offer)
    return LeadOut(lead_id=lead.id, offer=OfferOut(**public_offer(offer, unlocked=True)))


@router.post("/leads", status_code=201, response_model=LeadOut, summary="Leave contact details")
async def leave_contact(
    body: ContactBody, visitor: WidgetVisitor, site: VisitorSite, services: ServicesDep
) -> LeadOut:
    """The visitor leaves an email (or a name and phone) to be contacted by a person."""
    lead = await _capture(services, visitor, body, None)
    return LeadOut(lead_id=lead.id)

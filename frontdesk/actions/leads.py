"""Capturing leads and unlocking offers.

`do_capture_lead` validates the contact fields (those the offer requires must be present),
stores the lead and records `lead.captured` (and `offer.unlocked` for an offer) in the same
transaction; webhooks to CRMs are driven by those events.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.errors import invalid_request
from frontdesk.events.recorder import record_event
from frontdesk.ids import new_id
from frontdesk.models import Lead, utcnow

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{5,40}$")
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def check_contact(
    *, email: str | None, name: str | None, phone: str | None, required: list[str]
) -> dict[str, str | None]:
    contact = {
        "email": (email or "").strip().lower() or None,
        "name": " ".join((name or "").split()) or None,
        "phone": (phone or "").strip() or None,
    }
    missing = [f for f in required if not contact[f]]
    if missing:
        raise invalid_request(f"Please fill in: {', '.join(missing)}.")
    if contact["email"] and not _EMAIL.match(contact["email"]):
        raise invalid_request("email is not a valid address.")
    if contact["phone"] and not _PHONE.match(contact["phone"]):
        raise invalid_request("phone is not a valid number.")
    if contact["name"] and len(contact["name"]) > 200:
        raise invalid_request("name is too long.")
    if not any(contact.values()):
        raise invalid_request("Leave at least an email, a name or a phone number.")
    return contact


def do_capture_lead(
    session: AsyncSession,
    *,
    site_id: str,
    visitor_id: str,
    contact: dict[str, str | None],
    offer: dict[str, Any] | None = None,
    conversation_id: str | None = None,
    referrer: str | None = None,
    utm: dict[str, str] | None = None,
    dashboard_url: str | None = None,
) -> Lead:
    lead = Lead(
        id=new_id("lead"),
        site_id=site_id,
        visitor_id=visitor_id,
        conversation_id=conversation_id,
        offer_id=offer["id"] if offer else None,
        email=contact.get("email"),
        name=contact.get("name"),
        phone=contact.get("phone"),
        referrer=(referrer or None) and referrer[:1000],
        utm={k: v[:200] for k, v in (utm or {}).items() if k in UTM_KEYS},
        created_at=utcnow(),
    )
    session.add(lead)
    payload: dict[str, Any] = {
        "lead_id": lead.id,
        "visitor_id": visitor_id,
        "contact": contact,
        "offer": {"id": offer["id"], "title": offer["title"]} if offer else None,
        "conversation_ref": conversation_id,
        # Where a person opens the conversation (CRMs link to it from the lead).
        "conversation_url": (
            f"{dashboard_url}/inbox/{conversation_id}"
            if conversation_id and dashboard_url
            else None
        ),
        "referrer": lead.referrer,
        "utm": lead.utm,
    }
    record_event(session, "lead.captured", site_id=site_id, data=payload, actor=visitor_id)
    if offer is not None:
        record_event(
            session,
            "offer.unlocked",
            site_id=site_id,
            data={"offer_id": offer["id"], "visitor_id": visitor_id, "lead_id": lead.id},
            actor=visitor_id,
        )
    return lead

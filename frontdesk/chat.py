"""Accepting a visitor's message, whichever transport brought it (HTTP, SSE, WebSocket).

The one path: validate the text and client id, apply the rate limits, store the message once
(idempotent by `client_id`), and start the bot's answer if the bot handles the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass

from frontdesk.actions.message_store import store_message
from frontdesk.actions.messages import StoredMessage, check_client_id, check_message_text
from frontdesk.api.limits import enforce_message_limits
from frontdesk.queries.sites import SiteView
from frontdesk.security.tokens import VisitorClaims
from frontdesk.services import Services
from frontdesk.turns import Turn


@dataclass(frozen=True, slots=True)
class Accepted:
    stored: StoredMessage
    turn: Turn | None


async def accept_visitor_message(
    services: Services,
    site: SiteView,
    visitor: VisitorClaims,
    *,
    conversation_id: str,
    client_id: str,
    text: str,
    ip: str | None,
) -> Accepted:
    clean_text = check_message_text(text, max_chars=services.settings.max_message_chars)
    clean_id = check_client_id(client_id)
    await enforce_message_limits(services, site, visitor.visitor_id, ip)
    stored = await store_message(
        services.db,
        owner=visitor,
        conversation_id=conversation_id,
        role="visitor",
        text=clean_text,
        client_id=clean_id,
    )
    turn = services.turns.get(stored.message.id)
    if stored.created and stored.conversation.handler == "bot":
        turn = services.turns.start(site, visitor.visitor_id, stored.message)
    return Accepted(stored, turn)

"""Words for notifications: a title, a body and a dashboard link per event, and the emails (plain
text with an HTML alternative) built from them.

Everything that comes from visitors (names, emails, messages) is untrusted: titles and bodies are
plain text, the HTML part escapes every value, and header values are stripped of line breaks.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from frontdesk.models import EventRecord
from frontdesk.models.notifications import Notification

TITLE_CHARS = 200
BODY_CHARS = 1000


@dataclass(frozen=True)
class Text:
    title: str
    body: str
    link: str | None


def _clip(value: object, limit: int) -> str:
    text = " ".join(str(value).split())  # one line: no header or layout injection
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _contact(data: dict[str, Any]) -> str:
    contact = data.get("contact") or {}
    if not isinstance(contact, dict):
        return "a visitor"
    parts = [contact.get("name"), contact.get("email"), contact.get("phone")]
    return ", ".join(str(p) for p in parts if p) or "a visitor"


def describe(event: EventRecord, public_url: str) -> Text:
    """The notification text for one event (every type has a sensible fallback)."""
    data = event.data or {}
    dashboard = f"{public_url}/dashboard"
    conversation = data.get("conversation_id") or data.get("conversation_ref")
    link = f"{dashboard}/inbox/{conversation}" if isinstance(conversation, str) else None
    kind = event.type
    if kind == "lead.captured":
        offer = data.get("offer") or {}
        title = f"New lead: {_contact(data)}"
        body = f"Unlocked “{offer.get('title')}”." if isinstance(offer, dict) and offer else ""
    elif kind == "conversation.started":
        title = "A visitor started a conversation"
        body = f"Channel: {data.get('channel') or 'widget'}."
    elif kind == "message.created":
        message = data.get("message") or {}
        role = message.get("role", "visitor") if isinstance(message, dict) else "visitor"
        title = f"New {role} message"
        body = message.get("text", "") if isinstance(message, dict) else ""
    elif kind == "webhook.endpoint_disabled":
        title = "A webhook endpoint was disabled"
        body = f"Endpoint {data.get('endpoint_id')}: {data.get('reason') or 'failing too long'}."
        link = f"{dashboard}/admin/webhooks"
    elif kind == "webhook.delivery_failed":
        title = "A webhook delivery failed for good"
        body = f"Endpoint {data.get('endpoint_id')}, event {data.get('event_type')}."
        link = f"{dashboard}/admin/webhooks"
    elif kind == "responder.circuit_opened":
        title = "The assistant's responder is failing"
        body = f"Responder {data.get('responder')} failed repeatedly; the fallback answers for now."
    elif kind == "error.reported":
        title = "An error was reported"
        body = str(data.get("message") or data.get("kind") or "")
        link = f"{dashboard}/errors"
    else:
        title = kind.replace(".", " ").replace("_", " ").capitalize()
        body = ""
    if event.site_id:
        body = f"{body} (site {event.site_id})".strip()
    return Text(_clip(title, TITLE_CHARS), _clip(body, BODY_CHARS), link)


def _message(sender: str, to: str, subject: str, text: str, html_body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = _clip(subject, 200)
    message["Message-ID"] = make_msgid(domain="frontdesk")
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return message


def _html_page(heading: str, items: str, footer: str) -> str:
    return (
        '<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#111">'
        f"<h2>{html.escape(heading)}</h2>{items}"
        f'<p style="color:#666;font-size:12px">{html.escape(footer)}</p></body></html>'
    )


def _html_item(note: Notification) -> str:
    link = (
        f'<a href="{html.escape(note.link, quote=True)}">Open in FrontDesk</a>' if note.link else ""
    )
    return (
        f"<li><strong>{html.escape(note.title)}</strong>"
        f"<br>{html.escape(note.body)} {link}"
        f"<br><small>{html.escape(format_datetime(note.created_at))}</small></li>"
    )


FOOTER = "You get this because of your notification preferences in the FrontDesk dashboard."


def immediate_email(note: Notification, *, sender: str, to: str) -> EmailMessage:
    text = f"{note.title}\n\n{note.body}\n"
    if note.link:
        text += f"\n{note.link}\n"
    text += f"\n--\n{FOOTER}\n"
    page = _html_page(note.title, f"<ul>{_html_item(note)}</ul>", FOOTER)
    return _message(sender, to, f"[FrontDesk] {note.title}", text, page)


def digest_email(notes: Sequence[Notification], *, sender: str, to: str) -> EmailMessage:
    """One email for many notifications, grouped by event type, oldest first in each group."""
    groups: dict[str, list[Notification]] = defaultdict(list)
    for note in sorted(notes, key=lambda n: n.created_at):
        groups[note.event_type].append(note)
    count = len(notes)
    subject = f"[FrontDesk] {count} notification{'s' if count != 1 else ''}"
    lines = [f"{count} new notification{'s' if count != 1 else ''}:", ""]
    sections = []
    for event_type, items in sorted(groups.items()):
        lines.append(f"{event_type} ({len(items)})")
        for note in items:
            lines.append(f"  - {note.title}" + (f": {note.body}" if note.body else ""))
            if note.link:
                lines.append(f"    {note.link}")
        lines.append("")
        sections.append(
            f"<h3>{html.escape(event_type)} ({len(items)})</h3>"
            f"<ul>{''.join(_html_item(n) for n in items)}</ul>"
        )
    lines.append(f"--\n{FOOTER}")
    page = _html_page(subject.removeprefix("[FrontDesk] "), "".join(sections), FOOTER)
    return _message(sender, to, subject, "\n".join(lines) + "\n", page)

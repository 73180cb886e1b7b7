"""What a site shows in its widget beyond chat: quick actions and click-to-unlock offers.

Quick actions are buttons that send a canned message or open a URL. An offer has a title and a
teaser everyone sees, the contact fields required to unlock it, and content revealed only to a
visitor who unlocked it. Both are validated here and stored on the site.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from frontdesk.errors import invalid_request

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
CONTACT_FIELDS = ("email", "name", "phone")


class QuickAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    label: str = Field(min_length=1, max_length=60)
    kind: Literal["message", "url"]
    value: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _url_is_web(self) -> QuickAction:
        if self.kind == "url" and not self.value.startswith(("https://", "http://")):
            raise ValueError("a url action needs an http(s) URL")
        return self


class Offer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=100)
    teaser: str = Field(default="", max_length=500)
    fields: list[Literal["email", "name", "phone"]] = Field(min_length=1, max_length=3)
    content: str = Field(min_length=1, max_length=20_000)


_actions = TypeAdapter(list[QuickAction])
_offers = TypeAdapter(list[Offer])


def _unique_ids(items: list[Any], what: str) -> None:
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise invalid_request(f"{what} ids must be unique.")


def check_quick_actions(raw: Any) -> list[dict[str, Any]]:
    try:
        actions = _actions.validate_python(raw)
    except ValidationError as exc:
        raise invalid_request(f"quick_actions: {exc.errors()[0]['msg']}") from exc
    if len(actions) > 10:
        raise invalid_request("quick_actions: at most 10.")
    _unique_ids(actions, "quick action")
    return [a.model_dump() for a in actions]


def check_offers(raw: Any) -> list[dict[str, Any]]:
    try:
        offers = _offers.validate_python(raw)
    except ValidationError as exc:
        raise invalid_request(f"offers: {exc.errors()[0]['msg']}") from exc
    if len(offers) > 10:
        raise invalid_request("offers: at most 10.")
    _unique_ids(offers, "offer")
    return [o.model_dump() for o in offers]


def public_offer(offer: dict[str, Any], *, unlocked: bool) -> dict[str, Any]:
    """What a visitor sees of an offer: the content only once unlocked."""
    shown = {k: offer[k] for k in ("id", "title", "teaser", "fields")}
    shown["unlocked"] = unlocked
    if unlocked:
        shown["content"] = offer["content"]
    return shown

"""Request and response bodies of the widget API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from frontdesk.validation import JsonObject


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SessionCreate(_Body):
    site_id: StrictStr = Field(max_length=64, description="The site's public id (`site_…`).")
    visitor_id: StrictStr | None = Field(
        default=None, max_length=64, description="Continue an anonymous visitor."
    )
    identity: JsonObject | None = Field(
        default=None,
        description="`{user_id, expires, signature}` (HMAC) or `{token}` (JWT) from the site.",
    )
    locale: StrictStr | None = Field(default=None, max_length=16)


class SessionRefresh(_Body):
    refresh_token: StrictStr = Field(max_length=200)


class SessionIssued(BaseModel):
    visitor_id: str
    access_token: str
    expires_in: int
    refresh_token: str
    verified: bool


class ConversationCreated(BaseModel):
    id: str
    created_at: str


class ConversationSummary(BaseModel):
    id: str
    status: str
    created_at: str
    last_message_at: str | None
    last_seq: int


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]


class Citation(BaseModel):
    title: str
    url: str | None = None
    snippet: str


class MessageOut(BaseModel):
    id: str
    conversation_id: str
    seq: int
    role: Literal["visitor", "assistant", "operator", "system"]
    text: str
    created_at: str
    client_id: str | None = None
    citations: list[Citation] | None = None
    meta: dict[str, Any] | None = None


class MessagePage(BaseModel):
    messages: list[MessageOut]
    has_more: bool


class MessageCreate(_Body):
    client_id: StrictStr = Field(
        min_length=1, max_length=64, description="Client-generated id; a repeat stores nothing."
    )
    text: StrictStr = Field(max_length=100_000, description="The visitor's message.")


class MessageAccepted(BaseModel):
    message: MessageOut


class WidgetEvent(_Body):
    type: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")
    at: float | None = Field(
        default=None, allow_inf_nan=False, ge=0, le=1e13, description="Unix time in seconds."
    )

    @field_validator("at", mode="before")
    @classmethod
    def _number_only(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError("at must be a number")
        return value

    data: JsonObject = Field(default_factory=dict)


class WidgetEventBatch(_Body):
    events: list[WidgetEvent] = Field(min_length=1, max_length=50)


class EventsAccepted(BaseModel):
    accepted: int

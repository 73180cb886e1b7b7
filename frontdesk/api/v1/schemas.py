"""Bodies of the REST API. Unknown fields are rejected (`extra="forbid"`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator

from frontdesk.validation import JsonObject


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(Strict):
    email: StrictStr = Field(max_length=320)
    password: StrictStr = Field(max_length=1024)


class OperatorOut(BaseModel):
    id: str
    email: str
    name: str
    role: str
    disabled: bool


class LoginResult(BaseModel):
    operator: OperatorOut
    csrf_token: str


class SiteCreate(Strict):
    name: StrictStr = Field(min_length=1, max_length=200)
    allowed_origins: list[StrictStr] = Field(max_length=100)
    greeting: StrictStr = Field(default="", max_length=2000)
    locale: Literal["en", "ru"] = "en"
    responder: JsonObject | None = None
    options: dict[str, StrictBool] = Field(default_factory=dict)
    limits: JsonObject = Field(
        default_factory=dict,
        description='e.g. {"visitor_messages": "10/minute", "visitor_burst": 20}',
    )


class SiteUpdate(Strict):
    """Fields to change; a field left out keeps its value, and none of them may be null."""

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(k for k, v in data.items() if v is None)
            if nulls:
                raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out instead")
        return data

    name: StrictStr | None = Field(default=None, min_length=1, max_length=200)
    allowed_origins: list[StrictStr] | None = Field(default=None, max_length=100)
    greeting: StrictStr | None = Field(default=None, max_length=2000)
    locale: Literal["en", "ru"] | None = None
    responder: JsonObject | None = None
    quick_actions: list[JsonObject] | None = Field(default=None, max_length=10)
    offers: list[JsonObject] | None = Field(default=None, max_length=10)
    appearance: JsonObject | None = None
    limits: JsonObject | None = None
    options: dict[str, StrictBool] | None = None


class SiteOut(BaseModel):
    id: str
    name: str
    allowed_origins: list[str]
    greeting: str
    locale: str
    responder: dict[str, Any]
    appearance: dict[str, Any]
    quick_actions: list[dict[str, Any]]
    offers: list[dict[str, Any]]
    limits: dict[str, Any]
    options: dict[str, Any]
    created_at: str
    updated_at: str


class SiteCreated(SiteOut):
    secret: str = Field(description="Shown once: the site's backend signs identities with it.")


class SiteSecret(BaseModel):
    secret: str


class SiteList(BaseModel):
    sites: list[SiteOut]


class ApiKeyCreate(Strict):
    scopes: list[Literal["read", "write", "admin", "events"]] = Field(min_length=1)
    name: StrictStr = Field(default="", max_length=200)
    site_id: StrictStr | None = Field(default=None, max_length=40)


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    site_id: str | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown once.")


class ApiKeyList(BaseModel):
    api_keys: list[ApiKeyOut]


class OperatorCreate(Strict):
    email: StrictStr = Field(max_length=320)
    password: StrictStr = Field(min_length=12, max_length=1024)
    name: StrictStr = Field(default="", max_length=200)
    role: Literal["owner", "admin", "operator", "viewer"] = "operator"


class OperatorUpdate(Strict):
    role: Literal["owner", "admin", "operator", "viewer"] | None = None
    disabled: StrictBool | None = None


class OperatorList(BaseModel):
    operators: list[OperatorOut]


class AuditOut(BaseModel):
    id: int
    at: str
    actor_kind: str
    actor_id: str | None
    action: str
    target: str | None
    site_id: str | None
    ip: str | None
    data: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditOut]
    next_cursor: str | None


class DocumentCreate(Strict):
    site_id: StrictStr = Field(max_length=40)
    title: StrictStr = Field(min_length=1, max_length=300)
    text: StrictStr = Field(min_length=1, max_length=2_000_000)
    source: StrictStr | None = Field(default=None, max_length=1000)
    url: StrictStr | None = Field(default=None, max_length=1000, pattern=r"^https?://")
    content_type: Literal["text/markdown", "text/plain", "text/html"] = "text/markdown"


class DocumentOut(BaseModel):
    id: str
    site_id: str
    title: str
    source: str
    url: str | None
    content_type: str
    chunk_count: int
    updated_at: str


class DocumentList(BaseModel):
    documents: list[DocumentOut]


class IngestionProgress(BaseModel):
    stage: str = Field(description="queued, extracting, embedding, indexing, or the final status")
    done: int = Field(description="Chunks embedded so far (0 before chunking).")
    total: int = Field(description="Chunks in the document (0 until it is chunked).")


class IngestionOut(BaseModel):
    id: str
    site_id: str
    source: str
    title: str
    url: str | None
    content_type: str
    size: int = Field(description="Bytes uploaded.")
    status: Literal["queued", "running", "done", "duplicate", "failed"]
    outcome: Literal["added", "updated", "unchanged", "duplicate"] | None = Field(
        description="How the document was indexed: added or updated (done); unchanged (this "
        "source already had this text) or duplicate (another document has it)."
    )
    progress: IngestionProgress
    document_id: str | None = Field(
        description="The document indexed, or for a duplicate the one that already has the text."
    )
    chunk_count: int
    error: str | None = Field(description="Why a failed ingestion failed.")
    created_at: str
    started_at: str | None
    finished_at: str | None


class IngestionList(BaseModel):
    ingestions: list[IngestionOut]

"""Responder configuration: the site's responder JSON, validated.

`{"kind": "knowledge"}`, `{"kind": "openai", "base_url", "api_key", "model"}`,
`{"kind": "dify", "base_url", "api_key"}`, `{"kind": "flow", "flow_id"}`, each with an optional
`fallback` of the same shape. Provider keys are sealed with the server key before they are stored
(`seal_responder`) and never returned to a browser.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, TypeAdapter

from frontdesk.security.keys import SecretBox


class TimeoutsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connect_s: float = Field(default=3.0, gt=0, le=60)
    first_token_s: float = Field(default=15.0, gt=0, le=300)
    total_s: float = Field(default=60.0, gt=0, le=600)


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fallback: ResponderConfig | None = None
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    retries: int = Field(default=2, ge=0, le=5)


class KnowledgeConfig(_Base):
    kind: Literal["knowledge"]
    no_answer: str | None = Field(default=None, max_length=2000)
    min_coverage: float = Field(default=0.5, ge=0.0, le=1.0)
    min_similarity: float = Field(default=0.35, ge=0.0, le=1.0)
    max_sentences: int = Field(default=3, ge=1, le=10)


class OpenAIConfig(_Base):
    kind: Literal["openai"]
    base_url: HttpUrl
    api_key: str = Field(default="", max_length=500)
    model: str = Field(min_length=1, max_length=200)
    system_prompt: str | None = Field(default=None, max_length=20_000)


class DifyConfig(_Base):
    kind: Literal["dify"]
    base_url: HttpUrl
    api_key: str = Field(min_length=1, max_length=500)


class FlowConfig(_Base):
    kind: Literal["flow"]
    flow_id: str = Field(min_length=1, max_length=64)


ResponderConfig = Annotated[
    KnowledgeConfig | OpenAIConfig | DifyConfig | FlowConfig, Field(discriminator="kind")
]
for _model in (KnowledgeConfig, OpenAIConfig, DifyConfig, FlowConfig):
    _model.model_rebuild()

_adapter: TypeAdapter[KnowledgeConfig | OpenAIConfig | DifyConfig | FlowConfig] = TypeAdapter(
    ResponderConfig
)

DEFAULT_RESPONDER: dict[str, Any] = {"kind": "knowledge"}
SEALED = "api_key_sealed"


def parse_responder(raw: Any) -> KnowledgeConfig | OpenAIConfig | DifyConfig | FlowConfig:
    """Validate responder JSON (raises pydantic.ValidationError)."""
    return _adapter.validate_python(raw)


def seal_responder(raw: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """A copy safe to store: every `api_key` replaced by its sealed form."""
    stored = {k: v for k, v in raw.items() if k not in ("api_key", "fallback")}
    if raw.get("api_key"):
        stored[SEALED] = box.seal(str(raw["api_key"]))
    if isinstance(raw.get("fallback"), dict):
        stored["fallback"] = seal_responder(raw["fallback"], box)
    return stored


def unseal_responder(stored: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    raw = {k: v for k, v in stored.items() if k not in (SEALED, "fallback")}
    if stored.get(SEALED):
        raw["api_key"] = box.open(str(stored[SEALED]))
    if isinstance(stored.get("fallback"), dict):
        raw["fallback"] = unseal_responder(stored["fallback"], box)
    return raw


def public_responder(stored: dict[str, Any]) -> dict[str, Any]:
    """What an admin may see: the kind and settings, never a key."""
    shown = {k: v for k, v in stored.items() if k not in (SEALED, "fallback")}
    if stored.get(SEALED):
        shown["api_key"] = "********"
    if isinstance(stored.get("fallback"), dict):
        shown["fallback"] = public_responder(stored["fallback"])
    return shown

"""Building a site's responder: its responder JSON becomes a `ResponderChain`.

Each entry of the `fallback` chain becomes a link: the offline knowledge responder, an
OpenAI-compatible endpoint, or a Dify app (a flow, until flows exist, fails over at once). Upstream
links get a circuit breaker keyed by kind and host, shared across processes when Redis is
configured. HTTP clients are made once per upstream configuration and process, each over its own
aiohttp connection pool (`transport.py`), so that a new answer pays neither for a new client nor
for a new connection. The links made from a stored responder JSON are kept too (they hold no
state of a turn: breakers keep theirs in the store), so a turn does not open the sealed key and
validate the JSON again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
from openai import AsyncOpenAI

from frontdesk.config import Settings
from frontdesk.responders.base import AnswerRequest, Delta, FinalAnswer, Responder, ResponderError
from frontdesk.responders.breaker import BreakerStore, CircuitBreaker
from frontdesk.responders.chain import Link, ResponderChain, Timeouts
from frontdesk.responders.config import (
    DifyConfig,
    FlowConfig,
    KnowledgeConfig,
    OpenAIConfig,
    parse_responder,
    unseal_responder,
)
from frontdesk.responders.dify import DifyResponder
from frontdesk.responders.knowledge import KnowledgeResponder, ReadScope
from frontdesk.responders.openai_compat import OpenAIResponder
from frontdesk.responders.transport import AiohttpTransport
from frontdesk.security.keys import SecretBox

FailureHook = Callable[[str, ResponderError], Awaitable[None]]
OpenedHook = Callable[[str], Awaitable[None]]
# Distinct responder configurations whose links are kept; past it the memo starts again.
MAX_KEPT_CHAINS = 1024


class UnavailableFlow:
    """A flow responder before flows exist: it always hands over to the fallback."""

    def __init__(self, config: FlowConfig) -> None:
        self.name = f"flow:{config.flow_id}"

    async def answer(self, request: AnswerRequest) -> AsyncIterator[Delta | FinalAnswer]:
        raise ResponderError("unavailable", "flows cannot answer yet")
        yield  # pragma: no cover - makes this an async generator


class ResponderFactory:
    def __init__(
        self,
        *,
        settings: Settings,
        box: SecretBox,
        read_scope: ReadScope,
        breaker_store: BreakerStore,
    ) -> None:
        self.settings = settings
        self.box = box
        self.read_scope = read_scope
        self.breaker_store = breaker_store
        self._openai: dict[tuple[str, str, Timeouts], AsyncOpenAI] = {}
        self._http: dict[Timeouts, httpx.AsyncClient] = {}
        self._links: dict[bytes, list[Link]] = {}

    async def close(self) -> None:
        for client in self._openai.values():
            await client.close()
        for http in self._http.values():
            await http.aclose()

    def _http_client(self, timeouts: Timeouts) -> httpx.AsyncClient:
        client = self._http.get(timeouts)
        if client is None:
            client = httpx.AsyncClient(
                transport=AiohttpTransport(max_connections=500),
                timeout=httpx.Timeout(timeouts.total_s, connect=timeouts.connect_s),
                follow_redirects=False,
            )
            self._http[timeouts] = client
        return client

    def _openai_client(self, config: OpenAIConfig, timeouts: Timeouts) -> AsyncOpenAI:
        key = (str(config.base_url), config.api_key, timeouts)
        client = self._openai.get(key)
        if client is None:
            timeout = httpx.Timeout(timeouts.total_s, connect=timeouts.connect_s)
            client = AsyncOpenAI(
                base_url=str(config.base_url),
                api_key=config.api_key or "not-needed",
                max_retries=0,  # the chain retries, and only before the first token
                timeout=timeout,
                http_client=httpx.AsyncClient(
                    transport=AiohttpTransport(max_connections=1000),
                    timeout=timeout,
                    follow_redirects=True,  # as the SDK's own client does
                ),
            )
            self._openai[key] = client
        return client

    def breaker(self, name: str) -> CircuitBreaker:
        """The circuit breaker of upstream `name` (`kind:host`); its state is in the store."""
        return CircuitBreaker(
            name,
            self.breaker_store,
            failure_threshold=self.settings.responder_failure_threshold,
            window_s=self.settings.responder_failure_window_s,
            open_s=self.settings.responder_open_s,
        )

    def _link(self, config: Any) -> Link:
        timeouts = Timeouts(**config.timeouts.model_dump())
        if isinstance(config, KnowledgeConfig):
            return Link(KnowledgeResponder(config, self.read_scope), None, timeouts, retries=0)
        responder: Responder
        if isinstance(config, OpenAIConfig):
            responder = OpenAIResponder(
                config,
                self._openai_client(config, timeouts),
                history_budget_tokens=self.settings.responder_history_tokens,
            )
        elif isinstance(config, DifyConfig):
            responder = DifyResponder(config, self._http_client(timeouts))
        else:
            return Link(UnavailableFlow(config), None, timeouts, retries=0)
        return Link(responder, self.breaker(responder.name), timeouts, config.retries)

    def build(
        self,
        stored: dict[str, Any],
        *,
        on_failure: FailureHook | None = None,
        on_circuit_opened: OpenedHook | None = None,
    ) -> ResponderChain:
        key = orjson.dumps(stored or {}, option=orjson.OPT_SORT_KEYS)
        links = self._links.get(key)
        if links is None:
            config: Any = parse_responder(
                unseal_responder(stored or {"kind": "knowledge"}, self.box)
            )
            links = []
            while config is not None:
                links.append(self._link(config))
                config = config.fallback
            if len(self._links) >= MAX_KEPT_CHAINS:
                self._links.clear()
            self._links[key] = links
        return ResponderChain(
            list(links), on_failure=on_failure, on_circuit_opened=on_circuit_opened
        )

"""Building a responder from a site's stored responder JSON.

Upstream engines (OpenAI-compatible, Dify) and flows are configured and validated today but run
with the responders work; until then a site configured for them answers through its fallback
chain, ending at the knowledge responder, so a visitor is never left without a reply.
"""

from __future__ import annotations

from typing import Any

from frontdesk.responders.base import Responder
from frontdesk.responders.config import KnowledgeConfig
from frontdesk.responders.knowledge import KnowledgeResponder, ReadScope


def build_responder(stored: dict[str, Any], read_scope: ReadScope) -> Responder:
    node: Any = stored or {"kind": "knowledge"}
    while isinstance(node, dict) and node.get("kind") != "knowledge":
        node = node.get("fallback")
    if isinstance(node, dict):
        config = KnowledgeConfig.model_validate({k: v for k, v in node.items() if k != "fallback"})
    else:
        config = KnowledgeConfig(kind="knowledge")
    return KnowledgeResponder(config, read_scope)

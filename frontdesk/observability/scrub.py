"""Scrubbing: secrets and personal data out of anything kept or sent for diagnosis.

Used on stored error samples and on every event sent to Sentry. Keys that name a secret
(`authorization`, `cookie`, `*token*`, `*secret*`, `password`, …) lose their value whatever it is;
free text loses bearer tokens, FrontDesk API keys, webhook secrets, JWTs, secret-looking query
parameters and email addresses. It errs on the side of removing too much: a diagnosis never needs
a credential.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"authorization|cookie|token|secret|passw|api[-_]?key|apikey|csrf|session|signature|"
    r"credential|private|dsn",
    re.IGNORECASE,
)
_SECRET_TEXT = [
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1 " + REDACTED),
    (re.compile(r"\bfd_[A-Za-z0-9]{8,}"), REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (
        re.compile(
            r"([?&;][a-z0-9_-]*(?:token|key|secret|signature|passw|code|sig|auth)[a-z0-9_-]*=)"
            r"[^&#\s\"']+",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
]


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def scrub_text(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def scrub(value: Any, *, depth: int = 0) -> Any:
    """A copy of `value` (JSON-like) with secret-named keys redacted and free text scrubbed."""
    if depth > 12:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            key: (
                REDACTED
                if isinstance(key, str) and is_secret_key(key)
                else scrub(item, depth=depth + 1)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        pairs = _header_pairs(value)
        if pairs is not None:
            return [[k, REDACTED if is_secret_key(k) else scrub_text(v)] for k, v in pairs]
        return [scrub(item, depth=depth + 1) for item in value]
    return value


def _header_pairs(value: list[Any] | tuple[Any, ...]) -> list[tuple[str, str]] | None:
    """Headers as a list of [name, value] pairs (how Sentry and ASGI carry them), or None."""
    if not value or not all(
        isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(p, str) for p in item)
        for item in value
    ):
        return None
    return [(str(item[0]), str(item[1])) for item in value]


def bounded(value: Any, *, max_string: int = 2000, max_items: int = 30, depth: int = 0) -> Any:
    """A copy of `value` small enough to store: long strings cut, long lists and objects cut,
    nesting beyond four levels dropped."""
    if isinstance(value, str):
        return value if len(value) <= max_string else value[:max_string] + "…"
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= 4:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())[:max_items]
        return {
            str(k)[:100]: bounded(v, max_string=max_string, max_items=max_items, depth=depth + 1)
            for k, v in items
        }
    if isinstance(value, list | tuple):
        return [
            bounded(v, max_string=max_string, max_items=max_items, depth=depth + 1)
            for v in list(value)[:max_items]
        ]
    return bounded(repr(value), max_string=max_string)

"""Shared validators for free-form JSON that clients send (event data, appearance, identity).

Python's JSON parser accepts `NaN` and `Infinity` and any depth; PostgreSQL's JSONB accepts
neither, and deep structures are a denial-of-service vector. `JsonObject` admits only what every
store can keep: finite numbers, bounded depth, bounded keys.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator

MAX_DEPTH = 8
MAX_KEY = 200


def check_json_value(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        raise ValueError("numbers must fit in 64 bits")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > MAX_KEY:
                raise ValueError(f"keys must be strings of at most {MAX_KEY} characters")
            check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, depth + 1)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_value)]

"""Query parameters shared by the REST API: time windows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query

from frontdesk.errors import invalid_request

TimeParam = Annotated[
    str | None,
    Query(
        max_length=64,
        description="An ISO 8601 time with a zone, e.g. 2026-11-22T10:00:00Z.",
        json_schema_extra={"format": "date-time"},
    ),
]


def parse_time(value: str | None, name: str) -> datetime | None:
    """Parse a query time strictly (a number is not a time here)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise invalid_request(f"{name} must be an ISO 8601 time with a zone.") from exc
    return utc_bound(parsed, name)


def utc_bound(value: datetime | None, name: str) -> datetime | None:
    """A time with a zone, in UTC; out-of-range or zone-less times are invalid_request."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise invalid_request(f"{name} needs a time zone (e.g. Z).")
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise invalid_request(f"{name} is out of range.") from exc

"""Query parameters shared by the REST API: time windows."""

from __future__ import annotations

from datetime import UTC, datetime

from frontdesk.errors import invalid_request


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

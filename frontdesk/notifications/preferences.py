"""An operator's notification preferences: the API shape, the defaults, and the rules applied to
them (does this event concern them; are they in their quiet hours right now).

Quiet hours hold back email only: in-app notifications still arrive, unread, so nothing is lost
and the dashboard shows what happened overnight.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

from frontdesk.models.notifications import NotificationPreference

# What an operator hears about until they choose: things that need a person.
DEFAULT_EVENTS = (
    "lead.captured",
    "webhook.endpoint_disabled",
    "responder.circuit_opened",
)
EventPattern = str


class QuietHours(BaseModel):
    """A daily window, in the operator's time zone, in which no email is sent. `start` after
    `end` wraps midnight (22:00–07:00)."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["22:00"])
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["07:00"])
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Berlin"])

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value != "UTC" and value not in available_timezones():
            raise ValueError("unknown time zone (use an IANA name such as Europe/Berlin)")
        return value

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except ZoneInfoNotFoundError:  # validated above; tzdata could vanish in between
            return ZoneInfo("UTC")

    def ends_after(self, now: datetime) -> datetime | None:
        """When the quiet period containing `now` ends (UTC), or None if `now` is not quiet."""
        local = now.astimezone(self.zone())
        start, end = _clock(self.start), _clock(self.end)
        if start == end:
            return None
        today_end = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
        at = local.time()
        if start < end:
            quiet = start <= at < end
            ends = today_end
        else:  # wraps midnight
            quiet = at >= start or at < end
            ends = today_end if at < end else today_end + timedelta(days=1)
        if not quiet:
            return None
        # Re-resolve the wall-clock time in the zone (a DST change may lie in between).
        ends = datetime.combine(ends.date(), end, tzinfo=self.zone())
        return ends.astimezone(now.tzinfo)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class Preferences(BaseModel):
    """What `GET/PUT /api/v1/notifications/preferences` carry."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventPattern] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        max_length=50,
        description="Event types (patterns like `message.*` or `*`) to be notified of.",
    )
    site_ids: list[str] = Field(
        default_factory=list, max_length=200, description="Only these sites; empty = every site."
    )
    in_app: bool = Field(
        default=True, description="Show in the dashboard (live, with unread counts)."
    )
    email: bool = Field(default=False, description="Also send email (SMTP must be configured).")
    email_mode: Literal["immediate", "digest"] = "immediate"
    digest_interval_min: int = Field(
        default=60, ge=5, le=24 * 60, description="Minutes between digest emails."
    )
    quiet_hours: QuietHours | None = None

    @field_validator("events")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            allowed = all(c.isalnum() or c in "_.*" for c in pattern)
            if not pattern or len(pattern) > 64 or not allowed:
                raise ValueError(f"not an event pattern: {pattern[:64]!r}")
        return value

    @field_validator("site_ids")
    @classmethod
    def _site_ids(cls, value: list[str]) -> list[str]:
        for site_id in value:
            if not site_id or len(site_id) > 40:
                raise ValueError("site ids are 1–40 characters")
        return value

    @classmethod
    def of(cls, row: NotificationPreference | None) -> Preferences:
        if row is None:
            return cls()
        return cls(
            events=list(row.events),
            site_ids=list(row.site_ids),
            in_app=row.in_app,
            email=row.email,
            email_mode="digest" if row.email_mode == "digest" else "immediate",
            digest_interval_min=row.digest_interval_min,
            quiet_hours=QuietHours.model_validate(row.quiet_hours) if row.quiet_hours else None,
        )

    def apply_to(self, row: NotificationPreference) -> None:
        row.events = list(self.events)
        row.site_ids = list(self.site_ids)
        row.in_app = self.in_app
        row.email = self.email
        row.email_mode = self.email_mode
        row.digest_interval_min = self.digest_interval_min
        row.quiet_hours = self.quiet_hours.model_dump() if self.quiet_hours else None

    def wants(self, event_type: str, site_id: str | None) -> bool:
        if not (self.in_app or self.email):
            return False
        if self.site_ids and site_id not in self.site_ids:
            return False
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events)

    def email_at(self, now: datetime) -> datetime:
        """When an email may go out: now, or when the current quiet hours end."""
        if self.quiet_hours is None:
            return now
        return self.quiet_hours.ends_after(now) or now

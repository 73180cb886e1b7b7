"""Sentry: optional error reporting, on when a DSN is configured (`FRONTDESK_SENTRY_DSN`, or the
standard `SENTRY_DSN`) and sentry-sdk is installed (`pip install 'frontdesk[sentry]'`).

What goes: unhandled server exceptions (through the FastAPI integration), error-level log
records, and widget error reports, each tagged with its FrontDesk error group. What does not:
request bodies, cookies, authorization headers, local variables, personal data
(`send_default_pii=False`); and `before_send` scrubs every event once more, so a token that
slipped into a message, a URL or a breadcrumb is removed before it leaves the process. Sentry's
own tracing stays off: traces are OpenTelemetry's job.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from frontdesk import __version__
from frontdesk.actions.errors import ErrorReport
from frontdesk.config import Settings
from frontdesk.observability.scrub import scrub

log = logging.getLogger(__name__)

_active = False


def sentry_dsn(settings: Settings) -> str | None:
    if settings.sentry_dsn is not None:
        return settings.sentry_dsn.get_secret_value() or None
    return os.environ.get("SENTRY_DSN") or None


def before_send(event: Any, hint: Any) -> Any:
    return scrub(event)


def init_sentry(settings: Settings) -> bool:
    """Start reporting to Sentry if a DSN is configured; process-wide, like the SDK itself."""
    global _active
    dsn = sentry_dsn(settings)
    if dsn is None:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.fastapi import FastApiIntegration
        from sentry_sdk.integrations.starlette import StarletteIntegration
    except ImportError:
        log.warning(
            "a Sentry DSN is set but sentry-sdk is not installed: pip install 'frontdesk[sentry]'"
        )
        return False
    # Only real failures: a 503 with a code (an upstream is down) is the product working.
    failing = {500}
    sentry_sdk.init(
        dsn=dsn,
        environment=settings.environment,
        release=f"frontdesk@{__version__}",
        send_default_pii=False,
        include_local_variables=False,  # locals can hold tokens and visitors' messages
        max_request_body_size="never",
        before_send=before_send,
        integrations=[
            StarletteIntegration(failed_request_status_codes=failing),
            FastApiIntegration(failed_request_status_codes=failing),
        ],
    )
    _active = True
    return True


def sentry_active() -> bool:
    return _active


def tag_error_group(group_id: str) -> None:
    """Name the error group on the event Sentry is about to send for this request."""
    if _active:
        import sentry_sdk

        sentry_sdk.get_isolation_scope().set_tag("frontdesk.error_group", group_id)


def capture_widget_error(group_id: str, report: ErrorReport) -> None:
    """Forward a widget error report; Sentry groups it by our fingerprint, like we do."""
    if not _active:
        return
    import sentry_sdk

    sentry_sdk.capture_event(
        {
            "level": "error",
            "logger": "frontdesk.widget",
            "message": report.message,
            "fingerprint": ["widget", report.fingerprint],
            "tags": {
                "frontdesk.source": "widget",
                "frontdesk.site_id": report.site_id or "",
                "frontdesk.error_group": group_id,
                "error.kind": report.kind,
            },
            "extra": {"sample": report.sample, "top_frame": report.frame},
        }
    )


def reset_sentry() -> None:
    """Stop reporting (tests start and stop it in one process)."""
    global _active
    if not _active:
        return
    import sentry_sdk

    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.get_global_scope().set_client(None)
    _active = False

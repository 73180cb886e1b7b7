"""Recording errors into their groups: widget error reports and unhandled server exceptions.

`widget_error_report` and `server_error_report` turn what was seen into an `ErrorReport` with a
fingerprint; `do_record_error` folds it into its group (one upsert: insert, or count + 1 and the
newest sample), inside the caller's unit of work.

The fingerprint hashes the error's shape, not its instance: the kind, the message with URLs,
emails, ids, hex strings and numbers replaced by placeholders, and the top frame without line and
column numbers or bundle hashes. "Order 1234 not found" and "Order 98 not found" are one group;
the same message thrown from another function is another. Everything kept (message, sample) is
scrubbed of secrets and bounded in size.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from frontdesk.ids import new_id
from frontdesk.models import ErrorGroup, utcnow
from frontdesk.observability.scrub import bounded, scrub, scrub_text

MAX_KIND = 200
MAX_MESSAGE = 1000
MAX_TRACEBACK = 8000

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"()<>\[\]]+", re.IGNORECASE)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_PREFIXED_ID = re.compile(r"\b[a-z]{2,10}_[0-9a-z]{16,}\b")
_HEX = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SPACES = re.compile(r"\s+")
# A bundler's content hash before the extension: frame-BdU2x_9Q.js, app.3f9a2c1b.css.
_BUNDLE_HASH = re.compile(r"(?<=[-.])[A-Za-z0-9_]{8,}(?=\.(?:m?js|css)\b)")
_JS_FRAME = re.compile(r"^\s*at\s|@.*:\d+")
_KIND = re.compile(r"^([A-Za-z_$][\w$]*(?:Error|Exception))\b")
_KIND_NAME = re.compile(r"^[A-Za-z_$][\w$.]{0,99}$")


@dataclass(frozen=True, slots=True)
class ErrorReport:
    source: str  # "widget" | "server"
    site_id: str | None
    kind: str
    message: str
    frame: str
    sample: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.message, self.frame)


def normalise_message(message: str) -> str:
    text = _URL.sub("<url>", message)
    text = _EMAIL.sub("<email>", text)
    text = _UUID.sub("<id>", text)
    text = _PREFIXED_ID.sub("<id>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACES.sub(" ", text).strip()[:MAX_MESSAGE]


def fingerprint(kind: str, message: str, frame: str) -> str:
    shape = f"{kind}\n{normalise_message(message)}\n{frame}"
    return hashlib.sha256(shape.encode()).hexdigest()


def _file_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


def top_js_frame(stack: str) -> str:
    """The first frame of a browser stack (Chrome `at f (url:l:c)`, Firefox `f@url:l:c`), as
    `function (file)` without the origin, line, column or bundle hash."""
    for line in stack.splitlines():
        if _JS_FRAME.search(line):
            frame = _URL.sub(lambda m: _file_of(m.group(0)), line.strip())
            frame = _BUNDLE_HASH.sub("<hash>", frame)
            return _NUMBER.sub("<n>", frame)[:300]
    return ""


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _widget_kind(data: dict[str, Any], message: str, stack: str) -> str:
    for key in ("kind", "name"):
        value = _text(data, key)
        if _KIND_NAME.match(value):
            return value
    for text in (stack, message):
        found = _KIND.match(text.strip())
        if found:
            return found.group(1)
    return "Error"


def widget_error_report(
    *, site_id: str, visitor_id: str, client_at: float | None, data: dict[str, Any]
) -> ErrorReport:
    """An `error.reported` event from the widget (`message`, `stack`, `context`, …)."""
    message = _text(data, "message")
    stack = _text(data, "stack")
    sample: dict[str, Any] = {"visitor_id": visitor_id, "data": bounded(scrub(data))}
    if client_at is not None:
        sample["client_at"] = client_at
    return ErrorReport(
        source="widget",
        site_id=site_id,
        kind=_widget_kind(data, message, stack)[:MAX_KIND],
        message=scrub_text(message or "(no message)")[:MAX_MESSAGE],
        frame=top_js_frame(stack),
        sample=sample,
    )


def _kind_of(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def top_server_frame(exc: BaseException) -> str:
    """The innermost frame in FrontDesk's own code (else the innermost), as `path:function`."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    own = [f for f in frames if "/frontdesk/" in f.filename and "site-packages" not in f.filename]
    chosen = (own or frames)[-1]
    path = chosen.filename
    path = (
        "frontdesk/" + path.rsplit("/frontdesk/", 1)[1] if "/frontdesk/" in path else _file_of(path)
    )
    return f"{path}:{chosen.name}"


def server_error_report(exc: BaseException, request: dict[str, Any]) -> ErrorReport:
    """An unhandled exception; `request` is what is known of the request (method, path, ids),
    never its headers or body."""
    text = "".join(traceback.format_exception(exc))
    sample = {**request, "traceback": scrub_text(text)[-MAX_TRACEBACK:]}
    kind = _kind_of(exc)
    return ErrorReport(
        source="server",
        site_id=None,
        kind=kind[:MAX_KIND],
        message=scrub_text(str(exc) or kind)[:MAX_MESSAGE],
        frame=top_server_frame(exc),
        sample=bounded(sample, max_string=MAX_TRACEBACK),
    )


async def do_record_error(
    session: AsyncSession, report: ErrorReport, *, at: datetime | None = None
) -> str:
    """Fold `report` into its group; returns the group's id. One statement, so concurrent
    reports of the same error never lose a count or collide on the unique key."""
    now = at or utcnow()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt: Any = insert(ErrorGroup).values(
        id=new_id("err"),
        site_id=report.site_id,
        site_key=report.site_id or "",
        source=report.source,
        fingerprint=report.fingerprint,
        kind=report.kind,
        message=report.message,
        count=1,
        first_seen=now,
        last_seen=now,
        last_sample=report.sample,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["source", "site_key", "fingerprint"],
        set_={
            "count": ErrorGroup.count + 1,
            "last_seen": stmt.excluded.last_seen,
            "last_sample": stmt.excluded.last_sample,
            "kind": stmt.excluded.kind,
            "message": stmt.excluded.message,
        },
    ).returning(ErrorGroup.id)
    return str((await session.execute(stmt)).scalar_one())

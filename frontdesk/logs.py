"""Logging: one JSON object per line on stderr, so logs are machine-readable from day one.

Records carry their `extra` fields (site ids, error kinds), and, through `RequestContextFilter`,
the id of the request they happened in and the current trace and span ids, so that one request's
lines can be found together and next to its trace. Nothing here ever formats settings; secrets
stay out of logs because no code passes them to a logger.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from frontdesk.observability.context import request_id_var
from frontdesk.observability.tracing import current_trace_ids

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RequestContextFilter(logging.Filter):
    """Adds `request_id`, `trace_id` and `span_id` to records made during a request.

    A handler filter, not a logger filter: it must see records from every logger, and logger
    filters do not apply to records that propagate from child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        ids = current_trace_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

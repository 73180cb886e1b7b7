from __future__ import annotations

import json
import logging

from frontdesk.logs import JsonFormatter


def test_json_lines_with_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "WARNING", "msg": "hi %s", "args": ("there",), "site_id": "s1"}
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hi there" and entry["site_id"] == "s1"
    assert entry["level"] == "warning"

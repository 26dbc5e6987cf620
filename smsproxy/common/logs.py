"""`LOG_FORMAT=json`: one JSON object per log line, for a log shipper.

Each object has `time` (UTC, ISO 8601), `level`, `logger` and `message`, then the event's own
fields: whatever the call passed as `extra` (`logger.warning(..., extra={"event":
"pool_exhausted", "country": "GB"})`), so that a search needs no parsing of the message. A
traceback goes in `exception`, inside the same line. Numbers are masked by the log calls
themselves (`smsproxy.common.privacy`), whichever the format.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Every attribute a LogRecord has of its own; anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                entry.setdefault(name, _field(name, value))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # `default=str`: an extra that is no JSON type (a UUID, a datetime) is written as text
        # rather than losing the line.
        return json.dumps(entry, default=str, ensure_ascii=False)


def _field(name: str, value: Any) -> Any:
    if name == "request":
        # Django's request loggers pass the request: its method and path only, since the
        # query string of a GET webhook holds the sender's number.
        path = getattr(value, "path", None)
        return f"{getattr(value, 'method', '')} {path}".strip() if path is not None else None
    return value

"""The one JSON log line schema of every flexhost process, and its formatter.

Each record is one JSON object on one line of stdout, so a log pipeline (Loki,
Elasticsearch, journald's JSON output) needs no parser of its own. Every line has:

- `ts`: when, ISO 8601 in UTC with milliseconds (`2026-01-31T12:00:00.123Z`);
- `level`: `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`;
- `logger`: the logger's name (`gateway.proxy`, `tenant_service.access`);
- `message`: the text, its `%` arguments filled in;
- `request_id`: the `X-Request-Id` of the request being handled, else null;
- `tenant`: the tenant of that request, else null;
- `exc_info`: the formatted traceback, only when the record has one;

and then the record's own fields (`extra=`), which never replace the keys above.
Access lines (logger `<service>.access`, one per request) add `method`, `path`
(never the query), `status` and `duration_ms`, then each service's own fields.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Final

import orjson

REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "request_id", default=None
)
TENANT: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "tenant", default=None
)
# A LogRecord's own attributes; whatever else a record carries came from `extra=`.
_RECORD_ATTRIBUTES: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def timestamp(seconds: float) -> str:
    """`seconds` since the epoch as the schema's `ts` (UTC, milliseconds)."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, in the schema above."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line (without the newline)."""
        line: dict[str, object] = {
            "ts": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
            "tenant": TENANT.get(),
        }
        for key, value in record.__dict__.items():
            if (
                key not in _RECORD_ATTRIBUTES
                and not key.startswith("_")
                and key not in line
            ):
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def setup_logging(level: int = logging.INFO) -> None:
    """Send all logging to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Each service writes its own access line; aiohttp's would log headers.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def access_line(
    logger: str,
    method: str,
    path: str,
    status: int,
    duration_ms: float,
    **fields: object,
) -> str:
    """One access line in the schema, newline included; None fields are left out.

    Built without a LogRecord on purpose: a record and a formatter per request
    cost a noticeable share of a small answer. `request_id` and `tenant` come from
    the context unless given.
    """
    line: dict[str, object] = {
        "ts": timestamp(time.time()),
        "level": "INFO",
        "logger": logger,
        "message": f"{method} {path} {status}",
        "request_id": REQUEST_ID.get(),
        "tenant": TENANT.get(),
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
    }
    line.update((key, value) for key, value in fields.items() if value is not None)
    return orjson.dumps(line, default=str).decode() + "\n"

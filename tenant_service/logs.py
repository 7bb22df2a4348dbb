"""JSON-lines logging to stdout with the request id and tenant of the current task."""

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
_STANDARD: Final = frozenset(
    logging.LogRecord("x", 0, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; extra fields are kept, exceptions formatted."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line."""
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
            "tenant": TENANT.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(level: int = logging.INFO) -> None:
    """Send all logging to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # the access line comes from our middleware; aiohttp's own would log headers
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


ACCESS_LOGGER: Final = logging.getLogger("tenant_service.access")


def write_access(**fields: object) -> None:
    """One access line as JSON, straight to stdout.

    Kept off the LogRecord/formatter path on purpose: for small answers that path
    costs a noticeable share of the request. The line has the same shape as the
    other log lines and obeys the access logger's level.
    """
    if not ACCESS_LOGGER.isEnabledFor(logging.INFO):
        return
    now = time.time()
    entry: dict[str, object] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        + f".{int(now % 1 * 1000):03d}Z",
        "level": "INFO",
        "logger": ACCESS_LOGGER.name,
        "request_id": REQUEST_ID.get(),
        "tenant": TENANT.get(),
    }
    entry.update(fields)
    sys.stdout.write(orjson.dumps(entry, default=str).decode() + "\n")

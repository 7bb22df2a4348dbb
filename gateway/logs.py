"""JSON log lines on stdout with the request id and tenant of the current request."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Final, TextIO

import orjson

REQUEST_ID: Final = contextvars.ContextVar[str]("request_id", default="-")
TENANT: Final = contextvars.ContextVar[str]("tenant", default="-")

_RESERVED: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; extra fields given via `extra=` are included."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": REQUEST_ID.get(),
            "tenant": TENANT.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(level: int = logging.INFO) -> None:
    """Send all logging to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class AccessLog:
    """One compact JSON line per request, written straight to a stream.

    Kept off the logging module on purpose: a LogRecord and a formatter per request
    cost more than the rest of the gateway's own work for a cached answer.
    """

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = enabled

    def write(self, **fields: object) -> None:
        """Write one access line; None values are left out."""
        if not self.enabled:
            return
        now = time.time()
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now % 1 * 1000):03d}Z",
            "level": "INFO",
            "logger": "gateway.access",
        }
        line.update((k, v) for k, v in fields.items() if v is not None)
        self.stream.write(orjson.dumps(line, default=str).decode() + "\n")

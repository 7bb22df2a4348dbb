"""Gateway connections: a deadline for request headers; parser errors as JSON.

aiohttp has no deadline for a request's headers: a client sending one byte of them
every few seconds keeps a connection (and, with enough of them, the process's file
descriptors) for ever. `GuardedRequestHandler` is aiohttp's protocol with one timer
per connection: armed when a new connection opens (its first request) or when the
first byte of a keep-alive connection's next request arrives, disarmed when the
parser has the whole request line and headers. When it fires, a connection that
sent part of a request gets 408 in our JSON envelope; one that sent nothing at all
is closed silently, as nginx does (an idle connection is no request to answer).

A request the parser refuses (a control byte in a header, a bad request line) is
answered 400 in our JSON envelope with our usual headers, and logged in one line
without any of its bytes (contract.server).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, ClassVar, Final

from aiohttp import web
from aiohttp.streams import StreamReader

from contract.server import JsonErrorHandler, JsonErrorRunner

from .errors import (
    BadRequestError,
    InternalError,
    RequestTimeoutError,
    UpstreamTimeoutError,
    error_answer,
    raw_error,
)
from .keys import CLOSE_CONNECTION

logger = logging.getLogger(__name__)

MALFORMED: Final = (
    "The request could not be parsed: a malformed request line or header."
)
# An answer still being written for an earlier request on the connection when the
# next one's header deadline passes: look again this much later.
RECHECK_S: Final = 1.0


def close_after_answer(request: web.BaseRequest) -> None:
    """Close the connection once `request` is answered, without draining its body.

    aiohttp otherwise reads what is left of an unread body for up to 10 s
    ("lingering") to keep the connection: pointless for a client too slow to send it.
    """
    if isinstance(request, web.Request):
        request[CLOSE_CONNECTION] = True
    protocol = request.protocol
    if isinstance(protocol, GuardedRequestHandler):
        protocol.close_without_lingering()


async def close_if_asked(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: `Connection: close` for a request that asked for it."""
    if request.get(CLOSE_CONNECTION):
        response.force_close()
        response.headers["Connection"] = "close"


class GuardedRequestHandler(JsonErrorHandler):
    """aiohttp's HTTP/1.1 protocol with a header deadline and JSON parser errors."""

    __slots__ = ("_header_bytes", "_header_handle", "_header_timeout", "_payload")
    error_log: ClassVar[logging.Logger] = logging.getLogger(__name__)

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_handle: asyncio.TimerHandle | None = None
        self._header_bytes = False  # some of the awaited request has arrived
        self._payload: StreamReader | None = None  # the body of the last request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(bytes_seen=False)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and not self._upgraded:
            if self._header_handle is not None:
                self._header_bytes = True
            elif self._payload is None or self._payload.is_eof():
                # Between requests: this is the first byte of the next one.
                # (A request pipelined in the same packet as the end of the one
                # before it is not seen here; the keep-alive timeout bounds it.)
                self._arm(bytes_seen=True)
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            # The parser has the request line and headers (or refused them).
            self._disarm()
            if self._messages:
                self._payload = self._messages[-1][1]

    def close_without_lingering(self) -> None:
        """Close after the current answer; do not read the rest of its body."""
        self._lingering_time = 0.0
        self.close()

    def _arm(self, *, bytes_seen: bool) -> None:
        if self._header_timeout <= 0:
            return
        self._header_bytes = bytes_seen
        self._header_handle = self._loop.call_later(
            self._header_timeout, self._headers_overdue
        )

    def _disarm(self) -> None:
        if self._header_handle is not None:
            self._header_handle.cancel()
            self._header_handle = None

    def _headers_overdue(self) -> None:
        self._header_handle = None
        transport = self.transport
        if transport is None or self._force_close:
            return
        if self._request_in_progress or self._messages:
            # An earlier request's answer comes first; then this one's 408.
            self._header_handle = self._loop.call_later(
                RECHECK_S, self._headers_overdue
            )
            return
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else "-"
        if self._header_bytes:
            request_id = uuid.uuid4().hex
            err = RequestTimeoutError(
                "The request line and headers did not arrive within "
                f"{self._header_timeout:g} s."
            )
            transport.write(raw_error(err, request_id))
            logger.warning(
                "request headers from %s incomplete after %g s: answered 408, "
                "connection closed",
                address,
                self._header_timeout,
                extra={"status": 408, "client": address, "answer_id": request_id},
            )
        else:
            logger.debug("idle connection from %s closed", address)
        self.force_close()

    def malformed_answer(self) -> web.Response:
        """FlexMeasures' 400 for a request it cannot read."""
        return error_answer(BadRequestError(MALFORMED))

    def internal_answer(self) -> web.Response:
        """Our 500 envelope, no detail."""
        return error_answer(InternalError())

    def failure_answer(
        self, status: int, exc: BaseException | None, address: str
    ) -> web.Response:
        """504 for a request handler that timed out; else our 500."""
        if status == 504:
            logger.warning("request handler of %s timed out", address)
            return error_answer(UpstreamTimeoutError("The request took too long."))
        return super().failure_answer(status, exc, address)


class GuardedRunner(JsonErrorRunner):
    """An AppRunner whose connections have a header deadline (`header_timeout` s)."""

    def __init__(
        self, app: web.Application, *, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(
            app,
            handler_class=GuardedRequestHandler,
            handler_options={"header_timeout": header_timeout},
            **kwargs,
        )

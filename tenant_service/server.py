"""The backend's HTTP connections: requests the parser refuses are answered as JSON.

aiohttp's own answer to a malformed request (a control byte in a header, a bad
request line) is plain text, and its log line quotes the parser's message, which
holds the request's raw bytes: a token there would land in the log. The gateway
never sends such a request, but anything else on the host may reach the port.
"""

from __future__ import annotations

import logging
import uuid
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError

from tenant_service.api.v3_0 import respond
from tenant_service.errors import BadRequestError

logger = logging.getLogger(__name__)

INTERNAL: Final = {"message": "An internal error has occurred.", "status": 500}


class QuietRequestHandler(web.RequestHandler):
    """aiohttp's protocol, answering its own errors as JSON without logging bytes."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A JSON answer that closes the connection; the log names no request bytes."""
        if request.writer.output_size > 0:  # as aiohttp: an answer is under way
            raise ConnectionError("an answer is under way; cannot send an error")
        request_id = uuid.uuid4().hex
        address = request.remote or "-"
        if isinstance(exc, HttpProcessingError):
            # Its message quotes the request: only its type is logged.
            routine = self._request_count == 1 and isinstance(exc, BadHttpMethod)
            logger.log(
                logging.DEBUG if routine else logging.WARNING,
                "malformed request from %s (%s): answered 400, connection closed",
                address,
                type(exc).__name__,
                extra={"status": 400, "client": address, "answer_id": request_id},
            )
            response = respond(
                {"message": BadRequestError.default_message, "status": 400}, 400
            )
        else:
            logger.error("unhandled error in a request from %s", address, exc_info=exc)
            response = respond(INTERNAL, 500)
        response.headers["X-Request-Id"] = request_id
        response.headers["Connection"] = "close"  # aiohttp says so for HTTP/1.1 only
        response.force_close()
        return response


class QuietServer(web.Server):
    """aiohttp's low-level server, making `QuietRequestHandler` protocols."""

    def __call__(self) -> QuietRequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietRunner(web.AppRunner):
    """An AppRunner whose connections answer parser errors as JSON."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        # The same server (handler, request factory, the app's handler_args), only
        # with our protocol: aiohttp has no public switch for it.
        return QuietServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
